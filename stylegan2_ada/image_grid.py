"""Save a batch of images as one PNG grid (reals.png, fakes*.png, comparison grids)."""

import math
import os

import numpy as np
import PIL.Image
import torch


def to_uint8(images, drange=(-1, 1)):
    """[N, C, H, W] float in `drange` -> uint8 numpy [N, H, W, C]."""
    lo, hi = drange
    images = (images.detach().float().cpu() - lo) * (255 / (hi - lo))
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_image_grid(images, path, drange=(-1, 1), columns=None):
    """Tile images into rows of `columns` (default: a near-square grid) and write a PNG."""
    pixels = to_uint8(images, drange) if torch.is_tensor(images) else np.asarray(images)
    n, h, w, c = pixels.shape
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    grid = np.zeros([rows * h, columns * w, c], dtype=np.uint8)
    for i in range(n):
        row, col = divmod(i, columns)
        grid[row * h:(row + 1) * h, col * w:(col + 1) * w] = pixels[i]
    image = PIL.Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    tmp = f'{path}.tmp{os.getpid()}'
    image.save(tmp, format='PNG')
    os.replace(tmp, path)
