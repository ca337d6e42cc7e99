"""Upsample, pad, FIR-filter and downsample a batch of 2-D images (the StyleGAN2 resampler).

The FIR filter keeps resampling alias-free; one fused op with a plain PyTorch reference keeps
arbitrary-order gradients available everywhere. Semantics follow scipy.signal.upfirdn and
NVIDIA's op of the same name, argument for argument.
"""

import torch
import torch.nn.functional as F

from . import conv2d_gradfix


def _parse_scaling(scaling):
    """int or [x, y] -> (sx, sy)."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    assert isinstance(scaling, (list, tuple)) and len(scaling) == 2
    assert all(isinstance(s, int) for s in scaling)
    sx, sy = scaling
    assert sx >= 1 and sy >= 1
    return sx, sy


def _parse_padding(padding):
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        padding = [padding, padding]
    assert isinstance(padding, (list, tuple)) and len(padding) in (2, 4)
    assert all(isinstance(p, int) for p in padding)
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    padx0, padx1, pady0, pady1 = padding
    return padx0, padx1, pady0, pady1


def _get_filter_size(f):
    """(width, height) of a 1-D (separable) or 2-D filter; None is the 1x1 identity."""
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2)
    fw = int(f.shape[-1])
    fh = int(f.shape[0])
    assert fw >= 1 and fh >= 1
    return fw, fh


def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1,
                 separable=None):
    """Turn a list/array/tensor into the float32 filter upfirdn2d expects.

    A 1-D filter stays separable when it has at least 8 taps (two 1-D convs are then cheaper),
    otherwise it becomes its 2-D outer product, as NVIDIA decides; normalising to unit sum keeps
    the DC gain at 1.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    assert f.ndim in (0, 1, 2) and f.numel() > 0
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Zero-insert by `up`, pad (negative crops), convolve with `f`, keep every down-th pixel.

    x: [N, C, H, W]; f: float32 [fh, fw], [taps] (separable) or None. `padding` is relative
    to the upsampled image. flip_filter=False is convolution, True is correlation.
    """
    assert isinstance(x, torch.Tensor)
    assert impl in ('ref', 'cuda')
    up = _parse_scaling(up)
    down = _parse_scaling(down)
    padding = _parse_padding(padding)
    if impl == 'cuda' and x.device.type == 'cuda':
        from . import _cuda_upfirdn2d
        op = _cuda_upfirdn2d.op(up=up, down=down, padding=padding, flip_filter=flip_filter,
                                gain=gain)
        if op is not None:
            return op.apply(x, f)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Reference upfirdn2d from standard ops; differentiable to any order."""
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2)
    assert f.dtype == torch.float32 and not f.requires_grad
    n, c, h, w = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)

    # Zero insertion: give every pixel (up-1) zero neighbours to its right and below. Without
    # upsampling this would only copy the input, so it is skipped.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # Positive padding pads with zeros, negative padding crops (a view). Symmetric padding of
    # an image that was not upsampled is left to the convolution, which pads without a copy.
    conv_pad = (0, 0)
    if upx == upy == 1 and padx0 == padx1 >= 0 and pady0 == pady1 >= 0:
        conv_pad = (pady0, padx0)
    else:
        if max(padx0, padx1, pady0, pady1) > 0:
            x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
        if min(padx0, padx1, pady0, pady1) < 0:
            x = x[:, :, max(-pady0, 0):x.shape[2] - max(-pady1, 0),
                  max(-padx0, 0):x.shape[3] - max(-padx1, 0)]

    # conv2d correlates, so flip the filter to convolve unless correlation was asked for.
    # Decimation is the convolution's stride: only the kept outputs are computed.
    if gain != 1:
        f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        return conv2d_gradfix.conv2d(x, f, stride=(downy, downx), padding=conv_pad, groups=c)
    x = conv2d_gradfix.conv2d(x, f.unsqueeze(2), stride=(1, downx), padding=(0, conv_pad[1]),
                              groups=c)
    return conv2d_gradfix.conv2d(x, f.unsqueeze(3), stride=(downy, 1), padding=(conv_pad[0], 0),
                                 groups=c)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """FIR-filter keeping the image size; `padding` is extra, relative to the output."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample to exactly up x the size; gain up**2 restores the energy lost to zero insertion."""
    upx, upy = _parse_scaling(up)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw + upx - 1) // 2, padx1 + (fw - upx) // 2,
         pady0 + (fh + upy - 1) // 2, pady1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy,
                     impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Downsample to exactly 1/down the size; `padding` is relative to the input."""
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw - downx + 1) // 2, padx1 + (fw - downx) // 2,
         pady0 + (fh - downy + 1) // 2, pady1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
