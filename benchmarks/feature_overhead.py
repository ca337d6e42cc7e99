"""What the feature API costs: G and D forward time with and without `return_features`.

The plain forward only checks `record is not None` once per layer; this measures that the plain
path is as fast as ever and what asking for every feature adds. CPU, fp32, benchmark config of
the speed issue (res 32, z/w 128, 2 mapping layers, channel_base 4096, channel_max 128, batch 8).

    python benchmarks/feature_overhead.py [--repeats 30] [--out benchmarks/results/feature_overhead.json]
"""

import argparse
import json
import pathlib
import platform
import time

import torch

from stylegan2_ada.networks import Discriminator, Generator


def best_time(fn, repeats):
    """Best of `repeats` wall-clock times (the least disturbed run), after two warm-ups."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--out', default='benchmarks/results/feature_overhead.json')
    args = parser.parse_args()

    torch.manual_seed(0)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=4096, channel_max=128)).train()
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=4096,
                      channel_max=128).train()
    z = torch.randn([8, 128])
    img = torch.randn([8, 3, 32, 32])

    def g_step(features):
        out = G(z, None, return_features=features)
        (out[0] if features else out).sum().backward()

    def d_step(features):
        out = D(img, None, return_features=features)
        (out[0] if features else out).sum().backward()

    results = dict(machine=platform.processor() or platform.machine(),
                   threads=torch.get_num_threads(), torch=torch.__version__, batch=8)
    for name, step in [('G', g_step), ('D', d_step)]:
        plain = best_time(lambda: step(False), args.repeats)
        with_features = best_time(lambda: step(True), args.repeats)
        results[f'{name}_forward_backward_s'] = round(plain, 5)
        results[f'{name}_with_all_features_s'] = round(with_features, 5)
        results[f'{name}_features_overhead_pct'] = round(100 * (with_features / plain - 1), 2)
        print(f'{name}: plain {plain * 1e3:.2f} ms, with all features {with_features * 1e3:.2f} ms '
              f'({results[f"{name}_features_overhead_pct"]:+.1f}%)')
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
