"""bias_act on our compiled kernel (ops/cuda/bias_act.*), with first- and second-order gradients.

One kernel evaluates the op or its first or second derivative. The backward pass is itself an
autograd Function over the first-derivative pass, whose own backward uses the second-derivative
pass, so R1 and path-length regularisation (which differentiate through bias_act twice) stay on
the kernel. As in NVIDIA's design, derivatives beyond the second do not see the activation's
curvature. bias_act.py calls op() for CUDA tensors; op() returns None whenever the reference
must run instead.
"""

import functools
from typing import NamedTuple

import torch

from . import custom_ops
from .bias_act import _bias_act_ref, activation_funcs

SOURCES = ('bias_act.cpp', 'bias_act.cu', 'bias_act.h', 'bias_act_kernel.h', 'common.h')
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class Config(NamedTuple):
    """One bias_act configuration with defaults resolved, in _bias_act_ref's argument order."""
    dim: int
    act: str
    alpha: float
    gain: float
    clamp: float  # -1: no clamping


def op_config(dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """Config with the activation's defaults filled in, as op() resolves them."""
    spec = activation_funcs[act]
    return Config(int(dim), act, float(alpha if alpha is not None else spec.def_alpha),
                  float(gain if gain is not None else spec.def_gain),
                  float(clamp if clamp is not None else -1))


def plugin():
    """The compiled extension, or None (built, checked and reported once per process)."""
    return custom_ops.get_plugin('bias_act', SOURCES, validate=_validate)


def op(dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """The kernel-backed op for one configuration (cached), or None to use the reference."""
    cfg = op_config(dim, act, alpha, gain, clamp)
    if act == 'lrelu' and cfg.alpha < 0:
        return None  # the derivative is read from the output's sign, which needs alpha >= 0
    ext = plugin()
    if ext is None:
        return None
    return _op(ext, cfg)


@functools.lru_cache(maxsize=None)
def _op(ext, cfg):
    return BiasActOp(ext, cfg)


def _memory_format(x):
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class BiasActOp:
    """bias_act for one configuration; inputs the kernel does not take go to the reference.

    Works on CUDA tensors and, running the kernel's element code on the host, on CPU tensors
    (slow; that is how the kernel logic is tested without a GPU).
    """

    def __init__(self, ext, cfg):
        self.ext = ext
        self.cfg = cfg
        self.spec = activation_funcs[cfg.act]

    def apply(self, x, b=None):
        if not self.supports(x, b):
            return _bias_act_ref(x, b, *self.cfg)
        # The kernel walks storage linearly, so every tensor of one call shares x's dense layout.
        mf = _memory_format(x)
        x = x.contiguous(memory_format=mf)
        b = b.contiguous() if b is not None else None
        return _BiasActCuda.apply(x, b, self, mf)

    def supports(self, x, b):
        cfg = self.cfg
        if not isinstance(x, torch.Tensor) or x.dtype not in DTYPES or x.numel() == 0:
            return False
        if x.device.type not in ('cuda', 'cpu') or not (cfg.clamp >= 0 or cfg.clamp == -1):
            return False
        if b is None:
            return True
        return (isinstance(b, torch.Tensor) and b.ndim == 1 and b.dtype == x.dtype
                and b.device == x.device and 0 <= cfg.dim < x.ndim and b.shape[0] == x.shape[cfg.dim])

    def run(self, x, b, xref, yref, dy, order):
        """One kernel pass (see ops/cuda/bias_act.h); absent tensors are passed empty."""
        empty = x.new_empty([0])
        cfg = self.cfg
        return self.ext.bias_act(x, empty if b is None else b, empty if xref is None else xref,
                                 empty if yref is None else yref, empty if dy is None else dy,
                                 order, cfg.dim, self.spec.cuda_idx, cfg.alpha, cfg.gain, cfg.clamp)

    def reduce_to_bias(self, grad):
        return grad.sum([d for d in range(grad.ndim) if d != self.cfg.dim])


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, op, mf):
        y = op.run(x, b, None, None, None, order=0)
        # x (and b) are kept for derivatives computed from the input, and whenever a second
        # derivative exists: saving the real input is what connects that gradient to x's graph.
        keep_x = op.spec.ref == 'x' or op.spec.has_2nd_grad
        keep_y = op.spec.ref == 'y' or op.cfg.clamp >= 0
        ctx.save_for_backward(x if keep_x else None, b if keep_x else None, y if keep_y else None)
        ctx.op, ctx.mf = op, mf
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b, y = ctx.saved_tensors
        dy = dy.contiguous(memory_format=ctx.mf)
        dx = _BiasActCudaGrad.apply(dy, x, b, y, ctx.op, ctx.mf)
        db = ctx.op.reduce_to_bias(dx) if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None, None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * act'(s) * gain (masked where clamped), as a function of dy and the saved s."""

    @staticmethod
    def forward(ctx, dy, x, b, y, op, mf):
        dx = op.run(dy, b, x, y, None, order=1)
        ctx.save_for_backward(dy if op.spec.has_2nd_grad else None, x, b, y)
        ctx.op, ctx.mf = op, mf
        return dx

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b, y = ctx.saved_tensors
        op = ctx.op
        d_dx = d_dx.contiguous(memory_format=ctx.mf)
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:  # linear in dy: the same pass again
            d_dy = _BiasActCudaGrad.apply(d_dx, x, b, y, op, ctx.mf)
        if op.spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = op.run(d_dx, b, x, y, dy, order=2)
            if ctx.needs_input_grad[2]:
                d_b = op.reduce_to_bias(d_x)
        return d_dy, d_x, d_b, None, None, None


def _validation_cases():
    """(act, dtype, clamp, shape, dim, channels_last): every activation, clamping through both
    kinds of saved tensor, the half types and the layouts the networks use."""
    for act in activation_funcs:
        yield act, torch.float32, None, (2, 5, 3, 4), 1, False
    yield 'lrelu', torch.float32, 0.7, (2, 5, 3, 4), 1, False
    yield 'swish', torch.float32, 0.5, (2, 5, 3, 4), 1, False
    yield 'tanh', torch.float32, 0.3, (2, 5, 3, 4), 1, False
    yield 'linear', torch.float32, None, (6, 7), 1, False
    yield 'lrelu', torch.float16, 1.0, (2, 5, 3, 4), 1, False
    yield 'lrelu', torch.float16, 1.0, (2, 5, 3, 4), 1, True
    yield 'sigmoid', torch.bfloat16, None, (2, 5, 3, 4), 1, False


def away_from_clamp(x, b, cfg, margin=0.02):
    """x shifted where the output would land within `margin` of +-clamp.

    There a half-precision output can round onto the clamp and lose its gradient, which is a
    rounding effect, not a kernel error, and must not fail a comparison with float64.
    """
    if cfg.clamp < 0:
        return x
    for _ in range(20):
        y = _bias_act_ref(x.double(), None if b is None else b.double(), *cfg._replace(clamp=-1.0))
        near = (y.abs() - cfg.clamp).abs() < margin * max(cfg.clamp, 1.0)
        if not bool(near.any()):
            break
        x = torch.where(near, x + 0.37, x)
    return x


def _validate(ext, device=None):
    """Compare the kernel with the reference (in float64) on `device` (default: the current
    GPU): values and first-order gradients of x and b. Returns a one-line problem or None."""
    device = device or torch.device('cuda', torch.cuda.current_device())
    gen = torch.Generator().manual_seed(0)
    with custom_ops.validation_mode():
        for act, dtype, clamp, shape, dim, channels_last in _validation_cases():
            cfg = op_config(dim, act, clamp=clamp)
            x = (torch.randn(shape, generator=gen) * 2).to(device, dtype)
            b = torch.randn([shape[dim]], generator=gen).to(device, dtype)
            dy = torch.randn(shape, generator=gen).to(device, dtype)
            x = away_from_clamp(x, b, cfg)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)
            b.requires_grad_(True)
            y = BiasActOp(ext, cfg).apply(x, b)
            dx, db = torch.autograd.grad(y, [x, b], dy)
            x64 = x.detach().double().requires_grad_(True)
            b64 = b.detach().double().requires_grad_(True)
            y64 = _bias_act_ref(x64, b64, *cfg)
            dx64, db64 = torch.autograd.grad(y64, [x64, b64], dy.double())
            problem = (custom_ops.mismatch(y, y64, 'output')
                       or custom_ops.mismatch(dx, dx64, 'x gradient')
                       or custom_ops.mismatch(db, db64, 'bias gradient'))
            if problem:
                return f'{act}: {problem}'
    return None

