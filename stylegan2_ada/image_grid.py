"""Save a batch of images as one PNG grid (reals.png, fakes*.png, comparison grids).

Grids are for people to look at: `min_width` upscales small images (nearest neighbour, whole
factors, so pixels stay sharp) until the grid is at least that wide, `row_labels` writes a label
left of each row, and cells without an image are the background colour, never black tiles that
read as generated images.
"""

import math

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

from .checkpoint.atomic import atomic_write

LEGIBLE_WIDTH = 768       # px: the width grids meant for people are upscaled to at least
LABEL_PADDING = 8         # px around a row label


def to_uint8(images, drange=(-1, 1)):
    """[N, C, H, W] float in `drange` -> uint8 numpy [N, H, W, C]."""
    lo, hi = drange
    images = (images.detach().float().cpu() - lo) * (255 / (hi - lo))
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def label_font(size):
    """Pillow's built-in font at `size` px (its bitmap default where FreeType is missing)."""
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):   # Pillow < 10.1 or no FreeType
        return PIL.ImageFont.load_default()


def add_row_labels(image, labels, row_height, background):
    """A copy of `image` with a band on its left holding one label per row, vertically centred."""
    font = label_font(max(12, min(28, row_height // 4)))
    measure = PIL.ImageDraw.Draw(image)
    width = max(measure.textbbox((0, 0), text, font=font)[2] for text in labels) + 2 * LABEL_PADDING
    fill = background if image.mode == 'RGB' else background[0]
    out = PIL.Image.new(image.mode, (image.width + width, image.height), fill)
    out.paste(image, (width, 0))
    draw = PIL.ImageDraw.Draw(out)
    for row, text in enumerate(labels):
        top, bottom = draw.textbbox((0, 0), text, font=font)[1::2]
        y = row * row_height + (row_height - (bottom - top)) // 2 - top
        draw.text((LABEL_PADDING, y), text, fill=0 if image.mode == 'L' else (0, 0, 0), font=font)
    return out


def save_image_grid(images, path, drange=(-1, 1), columns=None, min_width=0, row_labels=None,
                    background=(255, 255, 255)):
    """Tile images into rows of `columns` (default: a near-square grid) and write a PNG; see the
    module docstring for `min_width`, `row_labels` and `background`."""
    pixels = to_uint8(images, drange) if torch.is_tensor(images) else np.asarray(images)
    n, h, w, c = pixels.shape
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    grid = np.empty([rows * h, columns * w, c], dtype=np.uint8)
    grid[...] = np.asarray(background, dtype=np.uint8)[:c]
    for i in range(n):
        row, col = divmod(i, columns)
        grid[row * h:(row + 1) * h, col * w:(col + 1) * w] = pixels[i]
    scale = max(1, math.ceil(min_width / (columns * w))) if min_width else 1
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    image = PIL.Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    if row_labels:
        if len(row_labels) != rows:
            raise ValueError(f'{len(row_labels)} row labels for {rows} rows')
        image = add_row_labels(image, list(row_labels), h * scale, tuple(background))
    with atomic_write(path, sync=False) as file:   # never a half PNG; a full disk is one line
        image.save(file, format='PNG')
