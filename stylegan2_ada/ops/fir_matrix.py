"""One axis of upfirdn2d (and of reflect padding) as a matrix, for resampling by matmul.

ADA's geometric augmentation pads, upsamples and downsamples images whose padded size changes
from batch to batch. As convolutions, every new size makes oneDNN build (JIT-compile) new
kernels; as a product of small dense matrices, out = A_y @ images @ A_x^T, every size runs on
the same matrix-multiply code. The matrices hold exactly the filter taps the convolution would
apply, so the result is the same up to float rounding, and matmul is differentiable to any order.
"""

import torch


def upfirdn_matrix(f, size, up=1, down=1, pad0=0, pad1=0, flip_filter=False, gain=1):
    """Matrix [out, size] of upfirdn2d along one axis with the 1-D filter `f`.

    Same semantics as upfirdn2d.upfirdn2d for that axis: zero-insert by `up`, pad by
    (pad0, pad1) (negative crops), convolve with f (correlate if flip_filter), keep every
    down-th sample; `gain` multiplies this axis only (upfirdn2d applies gain**0.5 per axis of a
    separable filter).
    """
    assert isinstance(f, torch.Tensor) and f.ndim == 1
    taps = f.shape[0]
    w = f if flip_filter else f.flip(0)   # conv2d correlates with w
    if gain != 1:
        w = w * gain
    out = (size * up + pad0 + pad1 - taps) // down + 1
    if out <= 0:
        raise ValueError(f'upfirdn of {size} samples with a {taps}-tap filter and padding '
                         f'({pad0}, {pad1}) leaves no output')
    o = torch.arange(out, device=f.device).unsqueeze(1)
    j = torch.arange(size, device=f.device).unsqueeze(0)
    tap = j * up + pad0 - o * down    # which tap multiplies input sample j for output o
    inside = (tap >= 0) & (tap < taps)
    return torch.where(inside, w[tap.clamp(0, taps - 1)], torch.zeros([], dtype=w.dtype,
                                                                     device=w.device))


def reflect_matrix(size, pad0, pad1, dtype=torch.float32, device=None):
    """0/1 matrix [pad0 + size + pad1, size] of reflect padding (F.pad mode='reflect')."""
    if not (0 <= pad0 < size and 0 <= pad1 < size):
        raise ValueError(f'reflect padding ({pad0}, {pad1}) must be smaller than the size {size}')
    index = torch.arange(-pad0, size + pad1, device=device).abs()
    index = torch.where(index >= size, 2 * (size - 1) - index, index)
    return torch.nn.functional.one_hot(index, size).to(dtype)


def apply_separable(images, A_y, A_x):
    """A_y @ images @ A_x^T for images [..., H, W]: A_y [H', H], A_x [W', W] -> [..., H', W']."""
    return torch.matmul(torch.matmul(A_y, images), A_x.t())
