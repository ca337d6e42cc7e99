"""`gda generate`: images from a trained network, with its plugins' inference behaviour applied."""

import os
import re

import click
import torch

from stylegan2_ada.errors import UserError
from stylegan2_ada.image_grid import LEGIBLE_WIDTH, save_image_grid

from . import generate as generation
from .plugins import default_manager


def parse_range(text):
    """'0-3,7' -> [0, 1, 2, 3, 7] (NVIDIA's num_range)."""
    values = []
    for part in text.split(','):
        match = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if not match:
            raise click.BadParameter(f'{text!r}: expected numbers and ranges like 0-7,10')
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        values += list(range(low, high + 1))
    return values


def class_labels(model, seeds, class_idx):
    """c for each seed: the conditioning plugin's infer_c (seeded per seed), a one-hot class, or
    nothing for an unconditional network."""
    if model.extensions.exclusive('conditioning') is not None:
        if class_idx is not None:
            raise UserError('--class does not apply: a plugin conditions this network')
        return torch.cat([model.default_c(1, seed) for seed in seeds])
    if model.G.c_dim == 0:
        if class_idx is not None:
            raise UserError('--class does not apply: the network is unconditional')
        return None
    if class_idx is None or not 0 <= class_idx < model.G.c_dim:
        raise UserError(f'the network is conditional: give --class between 0 and '
                        f'{model.G.c_dim - 1}')
    c = torch.zeros([len(seeds), model.G.c_dim])
    c[:, class_idx] = 1
    return c


@click.command()
# Network and output.
@click.option('--network',    help='Trained network: gda snapshot, NVIDIA pickle, path or URL', metavar='PATH', required=True)
@click.option('--outdir',     help='Where to write the images', metavar='DIR', default='out', show_default=True)
# Latents.
@click.option('--seeds',      help='Seeds, e.g. 0-7,10 (z as NVIDIA draws it per seed)', metavar='LIST', default='0-7', show_default=True)
@click.option('--trunc',      help='Truncation psi', type=float, default=1.0, show_default=True)
@click.option('--noise-mode', help='Noise inputs', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--class',      'class_idx', help='Class label of a conditional network', type=click.IntRange(min=0), metavar='IDX')
# Layout.
@click.option('--grid',       help='Write one grid image instead of one file per seed', is_flag=True)
@click.option('--pairs',      help='Source and adapted image of the same z side by side', is_flag=True)
# Execution.
@click.option('--device',     help='Torch device', metavar='DEV', default='cpu', show_default=True)
def generate(network, outdir, seeds, trunc, noise_mode, class_idx, grid, pairs, device):
    """Render images from a trained network (works offline from a gda snapshot alone).

    \b
    Examples:
      gda generate --network runs/00000-target-fewshot-batch4/network-snapshot-000020.pkl --seeds 0-7
      gda generate --network snapshot.pkl --seeds 0-7 --pairs --grid
    """
    seeds = parse_range(seeds)
    model = generation.open_model(network, device=device, manager=default_manager(),
                                  need_source=pairs)
    z = generation.seed_latents(seeds, model.G.z_dim)
    c = class_labels(model, seeds, class_idx)
    options = dict(truncation_psi=trunc, noise_mode=noise_mode)
    os.makedirs(outdir, exist_ok=True)
    if pairs:
        source, adapted = generation.pairs(model, z, c, **options)
        if grid:
            path = os.path.join(outdir, 'pairs.png')
            save_image_grid(torch.cat([source, adapted]), path, columns=len(seeds),
                            min_width=LEGIBLE_WIDTH, row_labels=['source', 'adapted'])
            click.echo(f'Wrote {path}: source images (top row) and adapted images (bottom row)')
            return
        for index, seed in enumerate(seeds):
            save_image_grid(torch.stack([source[index], adapted[index]]),
                            os.path.join(outdir, f'seed{seed:04d}-pair.png'), columns=2)
        click.echo(f'Wrote {len(seeds)} pairs (source left, adapted right) to {outdir}')
        return
    images = generation.render(model, z, c, **options)
    if grid:
        path = os.path.join(outdir, 'grid.png')
        save_image_grid(images, path, min_width=LEGIBLE_WIDTH)
        click.echo(f'Wrote {path}')
        return
    for index, seed in enumerate(seeds):
        save_image_grid(images[index:index + 1], os.path.join(outdir, f'seed{seed:04d}.png'))
    click.echo(f'Wrote {len(seeds)} images to {outdir}')
