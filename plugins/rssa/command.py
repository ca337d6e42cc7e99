"""`gda invert`: the target images' W+ codes under the source generator, for RSSA's compression.

`gda train --plugin rssa` inverts the targets itself during setup; running `gda invert` once and
passing `--rssa-codes FILE` skips that (and lets several runs share one inversion).
"""

import sys

import click

import stylegan2_ada   # cheap: stylegan2_ada.load imports torch on first use
from stylegan2_ada.errors import UserError

# numpy, torch and the modules that need them are imported inside the functions: registering
# this command (every `gda` start) must not load them.


def source_generator(network, device):
    data = stylegan2_ada.load(network)
    G = data.get('G_ema') or data.get('G')
    if G is None:
        raise UserError(f'{network} holds no generator to invert into')
    return G.to(device).eval().requires_grad_(False), data.get('origin', {})


def raw_images(path):
    """Every image of a dataset folder or zip as uint8 [n, C, H, W] (no mirroring)."""
    import numpy as np
    from stylegan2_ada.dataset import ImageFolderDataset
    dataset = ImageFolderDataset(path, use_labels=False, xflip=False)
    return dataset, np.stack([dataset[i][0] for i in range(len(dataset))])


@click.command('invert')
# Input and output.
@click.option('--network', help='Source generator: gda snapshot, NVIDIA pickle, path, URL or preset', metavar='PATH', required=True)
@click.option('--data',    help='Target images (folder or zip)', metavar='PATH', required=True)
@click.option('--out',     help='Codes file to write (.npz; give it to --rssa-codes)', metavar='FILE', required=True)
# Optimisation.
@click.option('--steps',   help='Adam steps per image (official code: 4002)', type=click.IntRange(min=1), default=1000, show_default=True)
@click.option('--lr',      help='Adam learning rate, halved every 1000 steps', type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option('--lpips',   help='LPIPS (VGG16) term: auto = use it if VGG16 can be found, else MSE only', type=click.Choice(['auto', 'on', 'off']), default='auto', show_default=True)
@click.option('--vgg16',   help='Path of NVIDIA\'s vgg16.pt (default: $GDA_VGG16, the cache, its URL)', metavar='PATH')
@click.option('--batch',   help='Images inverted together', type=click.IntRange(min=1), default=4, show_default=True)
# Execution.
@click.option('--seed',    help='Seed of the mean-w estimate', type=int, default=0, show_default=True)
@click.option('--device',  help='Torch device', metavar='DEV', default='cpu', show_default=True)
def invert(network, data, out, steps, lr, lpips, vgg16, batch, seed, device):
    """Invert target images into W+ of a source generator (RSSA's latent compression).

    \b
    Example:
      gda invert --network ffhq256 --data sketches.zip --out sketches-codes.npz
      gda train --source ffhq256 --data sketches.zip --plugin rssa --rssa-codes sketches-codes.npz
    """
    from . import inversion
    G, origin = source_generator(network, device)
    dataset, images = raw_images(data)
    if vgg16 is not None and lpips == 'off':
        raise click.UsageError('--vgg16 given with --lpips off; drop one of them')
    detector = inversion.lpips_detector(lpips, vgg16, device,
                                        warn=lambda message: click.echo(f'Warning: {message}', err=True))
    total = steps * ((len(images) + batch - 1) // batch)
    with click.progressbar(length=total, label=f'Inverting {len(images)} images',
                           file=sys.stderr) as bar:
        result = inversion.invert(G, images, steps=steps, lr=lr, lpips_detector=detector,
                                  batch=batch, seed=seed, progress=bar.update)
    inversion.save_codes(out, result, source=origin.get('reference', network))
    lpips_text = '' if detector is None else f', LPIPS {result.lpips.mean():.4f}'
    click.echo(f'Wrote {out}: {len(images)} codes of shape {list(result.codes.shape[1:])}; '
               f'MSE {result.initial_mse.mean():.4f} -> {result.mse.mean():.4f}{lpips_text}')
