"""`gda generate`: images from a trained network, with its plugins' inference behaviour applied.

Seeds are rendered in batches and written as they come, so `--seeds 0-99999999` starts writing at
once, keeps memory flat and shows its progress; only --grid needs every image at once.
"""

import os
import re
import sys
import time

import click

from stylegan2_ada.errors import UserError

from .plugins import default_manager

# torch and the engine are imported inside the functions that render, so that `gda --help` and
# `gda generate --help` start without loading torch.

BATCH = 32            # seeds rendered per forward pass
MAX_GRID = 1024       # --grid holds every image in memory (and in one PNG)
PROGRESS_EVERY = 2.0  # seconds between progress lines


class Seeds:
    """The seeds of --seeds as inclusive ranges: counted and walked without listing them all."""

    def __init__(self, ranges):
        self.ranges = list(ranges)

    def __len__(self):
        return sum(high - low + 1 for low, high in self.ranges)

    def __iter__(self):
        for low, high in self.ranges:
            yield from range(low, high + 1)

    def batches(self, size):
        """Lists of at most `size` seeds, in order."""
        batch = []
        for seed in self:
            batch.append(seed)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def parse_range(text):
    """'0-3,7' -> Seeds 0, 1, 2, 3, 7 (NVIDIA's num_range); a reversed range is an error."""
    ranges = []
    for part in text.split(','):
        match = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if not match:
            raise UserError(f'--seeds {text!r}: expected numbers and ranges like 0-7,10')
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise UserError(f'--seeds {text!r}: the range {low}-{high} is empty (it runs '
                            f'backwards); write it low to high, e.g. {high}-{low}')
        ranges.append((low, high))
    return Seeds(ranges)


def class_labels(model, seeds, class_idx):
    """c for each seed: the conditioning plugin's infer_c (seeded per seed), a one-hot class, or
    nothing for an unconditional network."""
    import torch
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


class Progress:
    """'done/total images, rate, ETA' on stderr every PROGRESS_EVERY seconds, for long jobs only
    (on a terminal the line is rewritten in place)."""

    def __init__(self, total):
        self.total = total
        self.start = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.shown = False

    def update(self, done):
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        line = (f'{done}/{self.total} images ({100 * done / self.total:.1f}%), {rate:.1f}/s, '
                f'ETA {_duration(eta)}')
        click.echo(('\r' + line) if self.tty else line, err=True, nl=not self.tty)
        self.shown = True

    def close(self):
        if self.shown and self.tty:
            click.echo('', err=True)


def _duration(seconds):
    seconds = int(seconds)
    if seconds < 3600:
        return f'{seconds // 60}m {seconds % 60:02d}s'
    return f'{seconds // 3600}h {seconds // 60 % 60:02d}m'


def render_batch(model, seeds, class_idx, pairs, options):
    """(source images or None, adapted images) of one batch of seeds."""
    from . import generate as generation
    z = generation.seed_latents(seeds, model.G.z_dim)
    c = class_labels(model, seeds, class_idx)
    if pairs:
        return generation.pairs(model, z, c, **options)
    return None, generation.render(model, z, c, **options)


def check_grid(seeds):
    """--grid renders every image at once: refuse a count that would not fit in memory."""
    if len(seeds) > MAX_GRID:
        raise UserError(f'--grid with {len(seeds)} seeds would hold every image in one PNG; give '
                        f'at most {MAX_GRID} seeds, or drop --grid to write one file per seed')


def write_grid(model, seeds, outdir, class_idx, pairs, options):
    """--grid: one image of every seed (pairs: source row above adapted row)."""
    import torch
    from stylegan2_ada.image_grid import LEGIBLE_WIDTH, save_image_grid
    source, adapted = render_batch(model, list(seeds), class_idx, pairs, options)
    if pairs:
        path = os.path.join(outdir, 'pairs.png')
        save_image_grid(torch.cat([source, adapted]), path, columns=len(seeds),
                        min_width=LEGIBLE_WIDTH, row_labels=['source', 'adapted'])
        return f'Wrote {path}: source images (top row) and adapted images (bottom row)'
    path = os.path.join(outdir, 'grid.png')
    save_image_grid(adapted, path, min_width=LEGIBLE_WIDTH)
    return f'Wrote {path}'


def write_files(model, seeds, outdir, class_idx, pairs, options):
    """One file per seed, written batch by batch with progress."""
    import torch
    from stylegan2_ada.image_grid import save_image_grid
    progress = Progress(len(seeds))
    done = 0
    for batch in seeds.batches(BATCH):
        source, adapted = render_batch(model, batch, class_idx, pairs, options)
        for index, seed in enumerate(batch):
            if pairs:
                save_image_grid(torch.stack([source[index], adapted[index]]),
                                os.path.join(outdir, f'seed{seed:04d}-pair.png'), columns=2)
            else:
                save_image_grid(adapted[index:index + 1], os.path.join(outdir, f'seed{seed:04d}.png'))
        done += len(batch)
        progress.update(done)
    progress.close()
    if pairs:
        return f'Wrote {done} pairs (source left, adapted right) to {outdir}'
    return f'Wrote {done} images to {outdir}'


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
@click.option('--grid',       help=f'Write one grid image instead of one file per seed (at most {MAX_GRID} seeds)', is_flag=True)
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
    from . import generate as generation
    seeds = parse_range(seeds)
    if grid:
        check_grid(seeds)
    model = generation.open_model(network, device=device, manager=default_manager(),
                                  need_source=pairs)
    options = dict(truncation_psi=trunc, noise_mode=noise_mode)
    os.makedirs(outdir, exist_ok=True)
    write = write_grid if grid else write_files
    click.echo(write(model, seeds, outdir, class_idx, pairs, options))
