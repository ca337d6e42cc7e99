"""Draw a small synthetic image set (coloured discs and squares) for the quick-start job.

Until gda bundles its real demo data, this gives every machine something to train on offline:
    python examples/make_shapes.py shapes --count 64 --size 32
"""

import argparse
import os

import numpy as np
import PIL.Image
import PIL.ImageDraw


def draw(rng, size):
    background = tuple(int(v) for v in rng.integers(0, 80, 3))
    image = PIL.Image.new('RGB', (size, size), background)
    pen = PIL.ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    radius = rng.uniform(0.2, 0.4) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    (pen.ellipse if rng.random() < 0.5 else pen.rectangle)(box, fill=colour)
    return image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('outdir')
    parser.add_argument('--count', type=int, default=64)
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    for i in range(args.count):
        draw(rng, args.size).save(os.path.join(args.outdir, f'shape{i:04d}.png'))
    print(f'wrote {args.count} images of {args.size}x{args.size} to {args.outdir}')


if __name__ == '__main__':
    main()
