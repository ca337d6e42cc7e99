"""How diverse a source generator is, measured against its training set: the figures that tell a
generator which draws many different emoji from one that has collapsed onto a few.

For each snapshot of a run (or one .pkl):
  - pairwise: the mean absolute pixel difference (0-255) between two samples, averaged over all
    pairs of N samples, and the same for N real images; `ratio` = samples / reals (1 = as varied
    as the data; a collapsed generator is well below).
  - distinct: how many different training images are the nearest (pixel L2) to N samples; with
    every sample drawing a different emoji this approaches N.
  - nearest: the mean pixel RMS distance of a sample to its nearest training image (0-255): small
    when the samples look like real emoji.
An 8x8 grid of the first 64 samples, each beside its nearest training image, goes to
<run>/diversity-<kimg>.png.

    python examples/demo/source_diversity.py RUN_DIR_OR_PKL [--data ZIP] [--log diversity.jsonl]
"""

import argparse
import functools
import json
import os
import re
import sys

import numpy as np
import torch

import stylegan2_ada
from gda_core.generate import seed_latents
from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.errors import UserError
from stylegan2_ada.image_grid import LEGIBLE_WIDTH, save_image_grid, to_uint8

SAMPLES = 256
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    'gda_core', 'demo_data', 'noto-emoji-32.zip')


def load_reals(path):
    """Every image of a dataset as uint8 [N, H, W, C]."""
    dataset = ImageFolderDataset(path)
    return np.stack([dataset[i][0] for i in range(len(dataset))]).transpose(0, 2, 3, 1)


def mean_pairwise(pixels):
    """Mean absolute pixel difference over all distinct pairs of uint8 images [N, H, W, C]."""
    flat = torch.from_numpy(pixels.reshape(len(pixels), -1)).float()
    total = sum(float((flat[i + 1:] - flat[i]).abs().mean(dim=1).sum()) for i in range(len(flat) - 1))
    return total / (len(flat) * (len(flat) - 1) / 2)


def nearest(samples, reals):
    """(index of the nearest real image for each sample, its RMS pixel distance)."""
    a = torch.from_numpy(samples.reshape(len(samples), -1)).float()
    b = torch.from_numpy(reals.reshape(len(reals), -1)).float()
    distances = torch.cdist(a, b)
    best, index = distances.min(dim=1)
    return index.numpy(), (best / a.shape[1] ** 0.5).numpy()


@torch.no_grad()
def generate(G, count):
    z = seed_latents(range(count), G.z_dim)
    c = torch.zeros([count, G.c_dim])
    return to_uint8(torch.cat([G(z[i:i + 64], c[i:i + 64], noise_mode='const')
                               for i in range(0, count, 64)]))


def measure(snapshot, reals, real_pairwise, grid=None, count=SAMPLES):
    """The diversity record of one snapshot (see the module docstring)."""
    data = stylegan2_ada.load(snapshot)
    G = data['G_ema'].eval().requires_grad_(False)
    samples = generate(G, count)
    index, distance = nearest(samples, reals)
    pairwise = mean_pairwise(samples)
    loop = (data.get('gda') or {}).get('loop') or {}
    record = dict(snapshot=os.path.basename(snapshot), kimg=loop.get('cur_nimg', 0) / 1000,
                  samples=count, pairwise=round(pairwise, 2), real_pairwise=round(real_pairwise, 2),
                  ratio=round(pairwise / real_pairwise, 3), distinct=int(len(set(index.tolist()))),
                  nearest=round(float(distance.mean()), 2))
    if grid:
        shown = 64
        tiles = np.stack([np.stack([samples[i], reals[index[i]]]) for i in range(shown)])
        tiles = tiles.reshape(shown * 2, *samples.shape[1:])
        save_image_grid(tiles, grid, columns=16, min_width=LEGIBLE_WIDTH)
    return record


def snapshots_of(path):
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(f'{path} is neither a run directory nor a snapshot')
    return sorted(os.path.join(path, name) for name in os.listdir(path)
                  if re.fullmatch(r'network-snapshot-\d+\.pkl', name))


def logged_snapshots(log, detector_views=None):
    """Names of the snapshots a JSON-lines log already holds (measured before: skipped); with
    `detector_views`, only those measured with that detector (records without the field: geometry)."""
    if not log or not os.path.isfile(log):
        return set()
    records = [json.loads(line) for line in open(log) if line.strip()]
    return {record['snapshot'] for record in records
            if detector_views is None or record.get('detector_views', 'geometry') == detector_views}


def report(record, log):
    """Print a record and append it to the log, if any."""
    print(json.dumps(record), flush=True)
    if log:
        with open(log, 'a') as file:
            file.write(json.dumps(record) + '\n')


def one_line_errors(main):
    """main(argv) -> exit status, where a UserError is one line on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except UserError as error:
            print(f'Error: {error}', file=sys.stderr)
            return 2
    return wrapped


@one_line_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', help='a run directory (every snapshot) or one snapshot .pkl')
    parser.add_argument('--data', default=DATA, help='the training set (default: the shipped Noto set)')
    parser.add_argument('--log', help='JSON lines file: snapshots already in it are skipped')
    parser.add_argument('--samples', type=int, default=SAMPLES)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    done = logged_snapshots(args.log)
    todo = [path for path in snapshots_of(args.path) if os.path.basename(path) not in done]
    if not todo:
        print('nothing new to measure')
        return 0
    reals = load_reals(args.data)
    subset = reals[np.random.RandomState(0).permutation(len(reals))[:args.samples]]
    real_pairwise = mean_pairwise(subset)
    for path in todo:
        kimg = re.findall(r'\d+', os.path.basename(path))
        grid = os.path.join(os.path.dirname(path), f'diversity-{kimg[-1] if kimg else "x"}.png')
        report(measure(path, reals, real_pairwise, grid, args.samples), args.log)
    return 0


if __name__ == '__main__':
    sys.exit(main())
