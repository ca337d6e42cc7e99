"""How close a source generator's samples are to real emoji, per snapshot: KID and FID against the
Noto set it trains on, and against the held-out Twemoji the benchmark adapts towards, with the
adaptation benchmark's own substitute detector (benchmarks/substitute_detector.py, trained once on
the bundled Noto + Twemoji images and cached). The fidelity figures beside source_diversity.py's
diversity figures: whether a longer run is still getting better.

    python examples/demo/source_fid.py RUN_DIR_OR_PKL [--every 40] [--log source-fid.jsonl]

Each call first prints the detector's reference figures: one half of the Noto set against the other
(the noise floor) and the Noto set against the held-out Twemoji (the style gap). The numbers are in
the detector's own units, comparable with the benchmark's table ("the source
generator against its own domain"), not with Inception FID/KID in papers.
"""

import argparse
import json
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import adaptation  # noqa: E402  (benchmarks/: the detector exactly as the benchmark builds it)
import stylegan2_ada  # noqa: E402
from gda_core import demo_data  # noqa: E402
from gda_core import metrics as gda_metrics  # noqa: E402
from source_diversity import logged_snapshots, one_line_errors, report, snapshots_of  # noqa: E402

SAMPLES = 1000   # generated images per figure, as the benchmark's --num-gen


def benchmark_options(samples=SAMPLES, views=adaptation.substitute_detector.DEFAULTS['views']):
    """The adaptation benchmark's defaults for the bundled domains (same detector, same cache)."""
    return dict(source=demo_data.SOURCE_MODEL, data=demo_data.TARGET_DIR,
                heldout=demo_data.HELDOUT_ZIP, source_data=demo_data.SOURCE_ZIP,
                detector_steps=adaptation.substitute_detector.DEFAULTS['steps'], detector_seed=0,
                detector_views=views, cache=True, num_gen=samples, num_pairs=samples)


def kimg_of(snapshot):
    """The training progress a run's snapshot records (None for a slimmed, shipped network)."""
    loop = (stylegan2_ada.load(snapshot).get('gda') or {}).get('loop') or {}
    return round(loop['cur_nimg'] / 1000, 2) if 'cur_nimg' in loop else None


def reference_figures(opts, detector):
    """What the detector says of real images alone: one half of the Noto set against the other
    (its noise floor: a generator as good as the data scores about this) and the Noto set against
    the held-out Twemoji (the style gap)."""
    noto = adaptation.detector_features(detector, adaptation.dataset_images(opts['source_data']))
    twemoji = adaptation.detector_features(detector, adaptation.dataset_images(opts['heldout']))
    pair = lambda a, b: {key: round(value, 4)  # noqa: E731
                         for key, value in adaptation.kid_fid(a, b).items()}
    return dict(noto_halves=pair(noto[0::2], noto[1::2]), noto_vs_twemoji=pair(noto, twemoji))


@torch.no_grad()
def measure(snapshot, opts, detector):
    """{snapshot, kimg, noto: {kid, fid}, twemoji: {kid, fid}} of one snapshot."""
    record = dict(snapshot=os.path.basename(snapshot), kimg=kimg_of(snapshot), samples=opts['num_gen'],
                  detector_views=opts['detector_views'])
    for name, data in (('noto', opts['source_data']), ('twemoji', opts['heldout'])):
        records = gda_metrics.evaluate_network(snapshot, ['kid', 'fid'], data=data,
                                               **adaptation.metric_options(opts, detector, 0))
        record[name] = {key: round(value, 4)
                        for key, value in adaptation.results_of(records).items()}
    return record


def every_nth_kimg(paths, every):
    """The first snapshot at or after each multiple of `every` kimg (by the kimg in the file
    name), and the newest; all of them when `every` is 0."""
    if not every:
        return paths
    number = lambda path: int(re.findall(r'\d+', os.path.basename(path))[-1])  # noqa: E731
    chosen, next_mark = [], 0
    for path in sorted(paths, key=number):
        if number(path) >= next_mark:
            chosen.append(path)
            next_mark = (number(path) // every + 1) * every
    return chosen + [path for path in paths[-1:] if path not in chosen]


@one_line_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', help='a run directory (its snapshots) or one snapshot .pkl')
    parser.add_argument('--every', type=int, default=0, metavar='KIMG',
                        help='only the first snapshot at or after each multiple of this many '
                             'kimg (the number in the file name), and the newest')
    parser.add_argument('--log', help='JSON lines file: snapshots already in it are skipped')
    parser.add_argument('--samples', type=int, default=SAMPLES)
    parser.add_argument('--detector-views', choices=adaptation.substitute_detector.VIEWS,
                        default=adaptation.substitute_detector.DEFAULTS['views'],
                        help='the detector to score with, as the benchmark\'s option (default: '
                             '%(default)s)')
    args = parser.parse_args(argv)
    done = logged_snapshots(args.log, args.detector_views)
    todo = [path for path in every_nth_kimg(snapshots_of(args.path), args.every)
            if os.path.basename(path) not in done]
    if not todo:
        print('nothing new to measure')
        return 0
    opts = benchmark_options(args.samples, args.detector_views)
    detector, _ = adaptation.build_detector(opts, lambda message: print(message, file=sys.stderr))
    print(json.dumps(dict(reference=reference_figures(opts, detector))), flush=True)
    for path in todo:
        report(measure(path, opts, detector), args.log)
    return 0


if __name__ == '__main__':
    sys.exit(main())
