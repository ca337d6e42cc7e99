"""Choose genda's learning rates and stop count: the numbers the GenDA paper's text lost.

Offline protocol (the demo pair, docs/demo.md): a source generator trained on Noto Emoji, the 10
bundled Twemoji shots as the target, the held-out Twemoji images as the reference (the results in
benchmarks/results/genda_sweep.md were measured on the earlier face-only pair). Stage 1 trains genda with
every (--lr, --genda-classifier-lr) pair for a fixed number of real images; stage 2 trains the best
pair with each stop count (every run has its own augmentation ramp, since the ramp spans the run).
Each result is scored by KID between 500 samples and the held-out images on proxy features (8x8
average-pooled RGB and Sobel edges: no Inception weights exist offline), plus a diversity number
(mean pairwise feature distance of the samples) to spot collapse. The source itself is row 0.

    python benchmarks/genda_sweep.py --source SOURCE.pkl --out benchmarks/results/genda_sweep

benchmarks/results/genda_sweep.md lists the source, the three invocations behind the defaults and
their results.
"""

import argparse
import itertools
import json
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from gda_core import training
from gda_core.demo_data import HELDOUT_ZIP, TARGET_DIR
from gda_core.generate import open_model, render, seed_latents
from gda_core.metrics.edges import sobel_edges
from gda_core.metrics.kid import kernel_inception_distance
from stylegan2_ada.dataset import ImageFolderDataset


def features(images):
    """Proxy features of images in [-1, 1]: 8x8 pooled RGB and 8x8 pooled Sobel edge strength."""
    x = (images.clamp(-1, 1) + 1) / 2
    colour = F.adaptive_avg_pool2d(x, 8).flatten(1)
    edges = F.adaptive_avg_pool2d(sobel_edges(x), 8).flatten(1)
    return torch.cat([colour, edges], 1).double().numpy()


def reference_features(path):
    dataset = ImageFolderDataset(path)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))
    return features(images.float() / 127.5 - 1)


def score(network, reference, samples, source=False):
    model = open_model(network, need_source=source)
    with torch.no_grad():
        images = torch.cat([render(model, z, source=source) for z in
                            seed_latents(range(samples), model.G.z_dim).split(100)])
    gen = features(images)
    spread = np.sqrt(((gen[:, None] - gen[None]) ** 2).sum(-1)).mean()
    return dict(kid=kernel_inception_distance(gen, reference, num_subsets=50), diversity=float(spread))


def train(source, outdir, lr, classifier_lr, kimg, seed):
    config = dict(outdir=outdir, data=TARGET_DIR, source=source, cfg=None, desc=None,
                  options=dict(kimg=kimg, iters=None, batch=None, batch_gpu=None, lr=lr, gamma=None,
                               ema_kimg=None, ada_target=None, cbase=None, cmax=None, map=None,
                               zdim=None),
                  tick=kimg, snap=1, mirror=False, cond=False, seed=seed, aug=None, p=None,
                  augpipe=None, device='cpu', plugins=['genda'],
                  plugin_options={'genda': {'classifier_lr': classifier_lr}})
    start = time.time()
    run_dir = training.run(config, log=lambda *args, **kwargs: None)
    snapshot = sorted(n for n in os.listdir(run_dir) if n.startswith('network-snapshot-'))[-1]
    return os.path.join(run_dir, snapshot), time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--source', required=True, help='source snapshot (trained on Noto faces)')
    parser.add_argument('--lrs', default='0.002,0.005', help='--lr values (adaptor, last ToRGB)')
    parser.add_argument('--classifier-lrs', default='0.2,0.5')
    parser.add_argument('--kimg', type=float, default=1.0, help='stop count of stage 1')
    parser.add_argument('--stops', default='0.5,2,4', help="stop counts of stage 2 (kimg; '' = none)")
    parser.add_argument('--samples', type=int, default=500)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='benchmarks/results/genda_sweep')
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    reference = reference_features(HELDOUT_ZIP)
    rows = [dict(stage=0, lr=None, classifier_lr=None, kimg=0.0, seconds=0.0,
                 **score(args.source, reference, args.samples, source=False))]
    work = tempfile.mkdtemp(prefix='genda-sweep-')
    grid = itertools.product(map(float, args.lrs.split(',')),
                             map(float, args.classifier_lrs.split(',')))
    for lr, classifier_lr in grid:
        snapshot, seconds = train(args.source, work, lr, classifier_lr, args.kimg, args.seed)
        rows.append(dict(stage=1, lr=lr, classifier_lr=classifier_lr, kimg=args.kimg,
                         seconds=seconds, **score(snapshot, reference, args.samples)))
        print(json.dumps(rows[-1]), flush=True)
    best = min((row for row in rows if row['stage'] == 1), key=lambda row: row['kid'])
    for kimg in [float(stop) for stop in args.stops.split(',') if stop]:
        snapshot, seconds = train(args.source, work, best['lr'], best['classifier_lr'], kimg,
                                  args.seed)
        rows.append(dict(stage=2, lr=best['lr'], classifier_lr=best['classifier_lr'], kimg=kimg,
                         seconds=seconds, **score(snapshot, reference, args.samples)))
        print(json.dumps(rows[-1]), flush=True)
    write(args, rows)


def write(args, rows):
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(dict(source=args.source, samples=args.samples, seed=args.seed, rows=rows), f,
                  indent=2)
    lines = ['| stage | --lr | --genda-classifier-lr | kimg | KID (proxy) x1e3 | diversity | sec |',
             '|---|---|---|---|---|---|---|']
    for row in rows:
        lines.append(f"| {row['stage']} | {row['lr'] or 'source'} | {row['classifier_lr'] or '-'} | "
                     f"{row['kimg']:g} | {row['kid'] * 1e3:.2f} | {row['diversity']:.3f} | "
                     f"{row['seconds']:.0f} |")
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
