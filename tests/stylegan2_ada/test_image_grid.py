"""Image grids people look at: exact pixels by default, whole-factor nearest upscaling to a legible
width, labelled rows, and background-coloured (not black) cells where there is no image."""

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2_ada.image_grid import LEGIBLE_WIDTH, save_image_grid, to_uint8


def read(path):
    return np.asarray(PIL.Image.open(path))


def images(count, size=8, seed=0):
    return torch.rand([count, 3, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_default_grid_keeps_every_pixel_and_fills_empty_cells_white(tmp_path):
    batch = images(3)
    save_image_grid(batch, tmp_path / 'g.png', columns=2)
    grid = read(tmp_path / 'g.png')
    assert grid.shape == (16, 16, 3)
    pixels = to_uint8(batch)
    assert np.array_equal(grid[:8, 8:], pixels[1]) and np.array_equal(grid[8:, :8], pixels[2])
    assert (grid[8:, 8:] == 255).all()                     # the 4th cell: background, not black


def test_min_width_upscales_by_a_whole_factor_with_nearest_neighbour(tmp_path):
    batch = images(4)
    save_image_grid(batch, tmp_path / 'g.png', columns=4, min_width=LEGIBLE_WIDTH)
    grid = read(tmp_path / 'g.png')
    scale = -(-LEGIBLE_WIDTH // 32)                         # 24: 4 columns of 8 px
    assert grid.shape == (8 * scale, 32 * scale, 3) and grid.shape[1] >= LEGIBLE_WIDTH
    first = to_uint8(batch)[0]
    assert np.array_equal(grid[:8 * scale:scale, :8 * scale:scale], first)
    assert np.array_equal(grid[scale - 1:8 * scale:scale, scale - 1:8 * scale:scale], first)


def test_row_labels_add_a_left_band_with_dark_text_and_keep_the_images(tmp_path):
    batch = images(4)
    save_image_grid(batch, tmp_path / 'g.png', columns=2, min_width=64, row_labels=['source', 'adapted'])
    grid = read(tmp_path / 'g.png')
    band = grid.shape[1] - 64
    assert grid.shape[0] == 64 and band > 20
    for row in range(2):
        label = grid[row * 32:(row + 1) * 32, :band]
        assert (label < 100).any() and (label == 255).mean() > 0.5   # some text on white
    assert np.array_equal(grid[:32:4, band:band + 32:4], to_uint8(batch)[0])


def test_a_label_per_row_is_required(tmp_path):
    with pytest.raises(ValueError, match='1 row labels for 2 rows'):
        save_image_grid(images(4), tmp_path / 'g.png', columns=2, row_labels=['only one'])


def test_grayscale_grids_take_labels_too(tmp_path):
    save_image_grid(images(2)[:, :1], tmp_path / 'g.png', columns=2, min_width=32, row_labels=['x'])
    grid = read(tmp_path / 'g.png')
    assert grid.ndim == 2 and grid.shape[0] == 16
