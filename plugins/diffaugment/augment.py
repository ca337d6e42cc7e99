"""DiffAugment's three transformations (Zhao et al., "Differentiable Augmentation for Data-Efficient
GAN Training", NeurIPS 2020), written from the paper and methods.md's description of the official
code (mit-han-lab/data-efficient-gans).

Images are in [-1, 1], [N, C, H, W]. Every draw is per sample from torch's own generator on the
images' device (augmentation draws stay per process, like NVIDIA's AugmentPipe), and every op is
differentiable with respect to the images, so G learns through them.
"""

import torch

from .policy import POLICIES, parse_policy  # noqa: F401  (POLICIES re-exported)


def _uniform(x, low, high):
    return torch.rand([x.shape[0], 1, 1, 1], device=x.device, dtype=x.dtype) * (high - low) + low


def color(x):
    """Brightness + U(-0.5, 0.5); saturation about the per-pixel channel mean, x U(0, 2);
    contrast about the per-image mean, x U(0.5, 1.5)."""
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x, ratio=0.125):
    """Shift each image by whole pixels, up to round(ratio * size) each way; vacated pixels are 0."""
    n, c, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_y, max_y + 1, [n, 1, 1], device=x.device)
    dx = torch.randint(-max_x, max_x + 1, [n, 1, 1], device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy   # output row y reads row y + dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(n, 1, h * w)
    shifted = x.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).reshape(n, c, h, w)
    return shifted * inside.unsqueeze(1).to(x.dtype)


def cutout(x, ratio=0.5):
    """Zero one (ratio*H x ratio*W) rectangle per image at a random centre (clipped at the border,
    never wholly outside, as in the official code)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_y % 2), [n, 1, 1], device=x.device) - size_y // 2
    left = torch.randint(0, w + (1 - size_x % 2), [n, 1, 1], device=x.device) - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1) - top
    cols = torch.arange(w, device=x.device).view(1, 1, w) - left
    hole = (rows >= 0) & (rows < size_y) & (cols >= 0) & (cols < size_x)
    return x * (~hole).unsqueeze(1).to(x.dtype)


OPS = dict(color=color, translation=translation, cutout=cutout)   # keyed by POLICIES


class DiffAugment:
    """The augmentation chain entry: fn(img, it) -> img, applying the policy's ops in order."""

    def __init__(self, policy):
        self.ops = [OPS[name] for name in parse_policy(policy)]

    def __call__(self, img, it=None):
        for op in self.ops:
            img = op(img)
        return img
