"""comparison.png at the end of a fine-tuning run: the source and the adapted generator on the
same latents, the first thing a user looks at to judge an adaptation."""

import os

import torch

from stylegan2_ada.image_grid import save_image_grid

from . import generate

SEEDS = range(8)
FILE = 'comparison.png'


def write(run_dir, snapshot_path, log, manager=None, device='cpu'):
    """Render seeds 0-7 from the snapshot (through its plugins, as `gda generate --pairs` does):
    source on the top row, adapted below. Returns the image path."""
    model = generate.open_model(snapshot_path, device=device, manager=manager, need_source=True)
    z = generate.seed_latents(SEEDS, model.G.z_dim)
    source, adapted = generate.pairs(model, z)
    path = os.path.join(run_dir, FILE)
    save_image_grid(torch.cat([source, adapted]), path, columns=len(SEEDS))
    log(f'{FILE}: source (top) and adapted (bottom) generator on seeds 0-7, '
        f'from {os.path.basename(snapshot_path)}')
    return path
