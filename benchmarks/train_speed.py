"""Training speed on the CPU for the fixed configuration of the speed issue.

res 32, z_dim = w_dim = 128, 2 mapping layers, channel_base 4096, channel_max 128, 'skip' G,
'resnet' D, batch 8, augpipe bgc with p fixed at 0.2, lazy regularisation (R1 gamma
0.0002 * res^2 / batch every 16 iterations, path length every 4). NVIDIA's own networks and loss
take about 0.53 s per iteration for it on the 2-core CPU machines (shared/reference/offline.md).

    python benchmarks/train_speed.py [--iters 48] [--out benchmarks/results/train_speed.json]

Times whole iterations after a warm-up of 16 (so every regularisation phase has run); reports the
median over blocks of 16 iterations (one full Greg/Dreg cycle each), which is robust to other
processes briefly taking the CPU.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_config import resolve
from stylegan2_ada.training_loop import TrainingLoop

RES, BATCH = 32, 8


class RandomImages:
    """An in-memory dataset: the benchmark measures training, not PNG decoding."""

    def __init__(self, count=256):
        self.images = (np.random.RandomState(0).rand(count, 3, RES, RES) * 255).astype(np.uint8)

    def __len__(self):
        return len(self.images)

    def get_label(self, idx):
        return np.zeros([0], np.float32)

    def __getitem__(self, idx):
        return self.images[idx], self.get_label(idx)


def build_loop(run_dir):
    torch.manual_seed(0)
    common = dict(channel_base=4096, channel_max=128, num_fp16_res=4, conv_clamp=256)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=RES, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(architecture='skip', **common))
    D = Discriminator(c_dim=0, img_resolution=RES, img_channels=3, architecture='resnet', **common,
                      epilogue_kwargs=dict(mbstd_group_size=4))
    opts, _ = resolve('auto', RES, dict(batch=BATCH))
    opts.update(iters=None, kimg=None, batch_gpu=BATCH, seed=0, aug='fixed', augpipe='bgc', p=0.2,
                gamma=0.0002 * RES ** 2 / BATCH, tick=1e9, snap=0)
    return TrainingLoop(run_dir, G, D, RandomImages(), opts, log=lambda *a, **k: None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=48, help='timed iterations (multiple of 16)')
    parser.add_argument('--out', default='benchmarks/results/train_speed.json')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as run_dir:
        loop = build_loop(run_dir)
        for _ in range(16):
            loop.step()
        blocks = []
        for _ in range(max(args.iters // 16, 1)):
            start = time.perf_counter()
            for _ in range(16):
                loop.step()
            blocks.append((time.perf_counter() - start) / 16)

    sec_per_iter = statistics.median(blocks)
    result = dict(config='res32 z/w128 map2 cbase4096 cmax128 skipG resnetD batch8 bgc p0.2 lazy-reg',
                  sec_per_iter=round(sec_per_iter, 4),
                  sec_per_kimg=round(sec_per_iter * 1000 / BATCH, 1),
                  blocks_sec_per_iter=[round(b, 4) for b in blocks],
                  nvidia_reference_sec_per_iter=0.53,
                  threads=torch.get_num_threads(), cpus=os.cpu_count(), torch=torch.__version__,
                  machine=platform.machine(), load_average=os.getloadavg()[0])
    print(f"{result['sec_per_iter']:.3f} s/iter, {result['sec_per_kimg']:.1f} s/kimg "
          f"(NVIDIA's code: ~0.53 s/iter on the same machines)")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
