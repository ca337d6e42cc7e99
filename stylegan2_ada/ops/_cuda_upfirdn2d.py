"""upfirdn2d on our compiled kernel (ops/cuda/upfirdn2d.*), differentiable to any order.

The gradient of upfirdn2d is another upfirdn2d (up and down swapped, the filter flipped, the
padding transposed), so backward calls the same Function and every order of gradient comes for
free. A 1-D (separable) filter runs as two passes of the 2-D kernel, one per axis, as the
reference runs two convolutions. upfirdn2d.py calls op() for CUDA tensors; op() returns None
whenever the reference must run instead.
"""

import functools
from typing import NamedTuple

import torch

from . import custom_ops
from .upfirdn2d import _upfirdn2d_ref

SOURCES = ('upfirdn2d.cpp', 'upfirdn2d.cu', 'upfirdn2d.h', 'upfirdn2d_kernel.h', 'common.h')
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MAX_FILTER_SIZE = 32  # kUpFirDn2dMaxFilter in ops/cuda/upfirdn2d.h


class Config(NamedTuple):
    """One upfirdn2d configuration, in the kernel binding's argument order."""
    up_x: int
    up_y: int
    down_x: int
    down_y: int
    pad_x0: int
    pad_x1: int
    pad_y0: int
    pad_y1: int
    flip: bool
    gain: float

    def transposed(self, in_h, in_w, out_h, out_w, filter_h, filter_w):
        """The configuration computing this one's input gradient (its adjoint).

        Input pixel k meets output o through tap k*up + pad0 - o*down; read backwards that is an
        upfirdn2d of the gradient by `down`, filter flipped, pad0' = taps - pad0 - 1, and pad1'
        chosen so that the result has exactly the input's size.
        """
        return Config(
            up_x=self.down_x, up_y=self.down_y, down_x=self.up_x, down_y=self.up_y,
            pad_x0=filter_w - self.pad_x0 - 1,
            pad_x1=in_w * self.up_x - out_w * self.down_x + self.pad_x0 - self.up_x + 1,
            pad_y0=filter_h - self.pad_y0 - 1,
            pad_y1=in_h * self.up_y - out_h * self.down_y + self.pad_y0 - self.up_y + 1,
            flip=not self.flip, gain=self.gain)

    def reference_args(self):
        """(up, down, padding, flip_filter, gain) as _upfirdn2d_ref takes them."""
        return ((self.up_x, self.up_y), (self.down_x, self.down_y),
                (self.pad_x0, self.pad_x1, self.pad_y0, self.pad_y1), self.flip, self.gain)


def plugin():
    """The compiled extension, or None (built, checked and reported once per process)."""
    return custom_ops.get_plugin('upfirdn2d', SOURCES, validate=_validate)


def op(up, down, padding, flip_filter, gain):
    """The kernel-backed op for one configuration (cached), or None to use the reference.

    up, down: (x, y); padding: (x0, x1, y0, y1), as upfirdn2d.py parses them.
    """
    ext = plugin()
    if ext is None:
        return None
    return _op(ext, Config(int(up[0]), int(up[1]), int(down[0]), int(down[1]),
                           *(int(p) for p in padding), bool(flip_filter), float(gain)))


@functools.lru_cache(maxsize=None)
def _op(ext, cfg):
    return UpFirDn2dOp(ext, cfg)


def separable_passes(f, cfg):
    """The (2-D filter, config) passes that apply `cfg` with filter `f`.

    A 2-D filter is one pass. A 1-D filter is a horizontal pass (all of the x resampling) and a
    vertical one, each scaled by sqrt(gain) as the reference scales its two convolutions, so
    that the float32 filter taps are the same. (A negative gain, which the reference cannot
    split, goes whole into the first pass.)
    """
    if f.ndim == 2:
        return [(f.contiguous(), cfg)]
    f = f.contiguous()
    gain_x, gain_y = (cfg.gain ** 0.5,) * 2 if cfg.gain >= 0 else (cfg.gain, 1.0)
    horizontal = cfg._replace(up_y=1, down_y=1, pad_y0=0, pad_y1=0, gain=gain_x)
    vertical = cfg._replace(up_x=1, down_x=1, pad_x0=0, pad_x1=0, gain=gain_y)
    return [(f.reshape(1, -1), horizontal), (f.reshape(-1, 1), vertical)]


class UpFirDn2dOp:
    """upfirdn2d for one configuration; inputs the kernel does not take go to the reference.

    Works on CUDA tensors and, running the kernel's blocks one by one on the host, on CPU
    tensors (slow; that is how the kernel logic is tested without a GPU).
    """

    def __init__(self, ext, cfg):
        self.ext = ext
        self.cfg = cfg

    def apply(self, x, f=None):
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        if not self.supports(x, f):
            return _upfirdn2d_ref(x, f, *self.cfg.reference_args())
        for filt, cfg in separable_passes(f, self.cfg):
            x = _UpFirDn2dCuda.apply(x, filt, self.ext, cfg)
        return x

    def supports(self, x, f):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.dtype not in DTYPES or x.numel() == 0:
            return False
        if x.device.type not in ('cuda', 'cpu'):
            return False
        if not isinstance(f, torch.Tensor) or f.dtype != torch.float32 or f.ndim not in (1, 2):
            return False
        if f.requires_grad or f.device != x.device or max(f.shape) > MAX_FILTER_SIZE:
            return False
        # The padded, upsampled image must hold the filter; otherwise let the reference complain.
        c = self.cfg
        fh, fw = (f.shape[0], f.shape[-1])
        return (x.shape[3] * c.up_x + c.pad_x0 + c.pad_x1 >= fw
                and x.shape[2] * c.up_y + c.pad_y0 + c.pad_y1 >= fh)


class _UpFirDn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, ext, cfg):
        y = ext.upfirdn2d(x, f, *cfg)
        ctx.save_for_backward(f)
        ctx.ext, ctx.cfg, ctx.in_size = ext, cfg, tuple(x.shape[2:])
        return y

    @staticmethod
    def backward(ctx, dy):
        f, = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            cfg = ctx.cfg.transposed(*ctx.in_size, *dy.shape[2:], *f.shape)
            dx = _UpFirDn2dCuda.apply(dy, f, ctx.ext, cfg)
        return dx, None, None, None


def _validation_cases(gen):
    """(label, 2-D or 1-D filter, config, dtype): the resamplers the networks use (upsample2d,
    downsample2d, filter2d with a 4x4 filter), plus a separable filter, flipping, gain, cropping
    and unequal x/y factors, and the half types."""
    f4 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f4 = torch.outer(f4, f4) / f4.sum() ** 2
    f8 = torch.rand([8], generator=gen) + 0.1
    f35 = torch.randn([3, 5], generator=gen)
    up = Config(2, 2, 1, 1, 2, 1, 2, 1, False, 4.0)
    down = Config(1, 1, 2, 2, 1, 1, 1, 1, False, 1.0)
    yield 'upsample2d', f4, up, torch.float32
    yield 'downsample2d', f4, down, torch.float32
    yield 'filter2d', f4, Config(1, 1, 1, 1, 2, 1, 2, 1, False, 1.0), torch.float32
    yield 'separable', f8, Config(2, 1, 1, 2, 3, 4, -1, 2, True, 0.7), torch.float32
    yield 'mixed', f35, Config(1, 3, 3, 2, -1, 2, 4, 0, False, 1.5), torch.float32
    yield 'upsample2d', f4, up, torch.float16
    yield 'downsample2d', f4, down, torch.bfloat16


def _validate(ext, device=None):
    """Compare the kernel with the reference (in float64) on `device` (default: the current
    GPU): values and first-order gradients. Returns a one-line problem or None."""
    device = device or torch.device('cuda', torch.cuda.current_device())
    gen = torch.Generator().manual_seed(0)
    with custom_ops.validation_mode():
        for label, f, cfg, dtype in _validation_cases(gen):
            f = f.to(device)
            x = torch.randn([2, 3, 7, 9], generator=gen).to(device, dtype).requires_grad_(True)
            y = UpFirDn2dOp(ext, cfg).apply(x, f)
            dy = torch.randn(y.shape, generator=gen).to(device, dtype)
            dx, = torch.autograd.grad(y, [x], dy)
            x64 = x.detach().double().requires_grad_(True)
            y64 = _upfirdn2d_ref(x64, f, *cfg.reference_args())
            dx64, = torch.autograd.grad(y64, [x64], dy.double())
            problem = (custom_ops.mismatch(y, y64, 'output')
                       or custom_ops.mismatch(dx, dx64, 'x gradient'))
            if problem:
                return f'{label}: {problem}'
    return None
