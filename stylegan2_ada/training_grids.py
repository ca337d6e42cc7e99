"""reals.png and the fakes*.png grids of a run directory.

The fakes render one fixed grid of latents (seeded from the run seed, not drawn from the training
streams) through G_ema's 'generate' pipeline, so that the grids of one run compare like with like
and writing them changes nothing in training.
"""

import os

import torch

from .image_grid import LEGIBLE_WIDTH, save_image_grid
from .training_step import load_batch

REALS = 16   # images in reals.png


class SampleGrids:
    """The run's image grids; `networks` is its TrainingNetworks."""

    def __init__(self, run_dir, dataset, networks, opts, device):
        self.run_dir, self.dataset, self.networks = run_dir, dataset, networks
        self.count, self.seed, self.device = opts.grid_size, opts.seed, device

    def latents(self):
        generator = torch.Generator().manual_seed(self.seed + 123)
        z = torch.randn([self.count, self.networks.G.z_dim], generator=generator).to(self.device)
        items = torch.randint(len(self.dataset), [self.count], generator=generator).tolist()
        return z, self.networks.labels.item_c(items).to(self.device, torch.float32)

    def save_reals(self):
        reals = load_batch(self.dataset, range(min(len(self.dataset), REALS)), 'cpu')[0]
        save_image_grid(reals, os.path.join(self.run_dir, 'reals.png'), min_width=LEGIBLE_WIDTH)

    @torch.no_grad()
    def save_fakes(self, name):
        z, c = self.latents()
        images = self.networks.nets.synthesize('G_ema', z, c, noise_mode='const',
                                               mode='generate').img
        save_image_grid(images, os.path.join(self.run_dir, name), min_width=LEGIBLE_WIDTH)


__all__ = ['SampleGrids']
