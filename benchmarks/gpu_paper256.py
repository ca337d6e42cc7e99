"""GPU benchmark in the papers' setting: NVIDIA's ffhq256 (paper256) adapted to a 10-shot folder.

Every configuration of benchmarks/adaptation.py (baseline, each method plugin, the advertised
combinations) is fine-tuned by `gda train` with the same iterations, batch 4 and seeds, each in its
own process; the table reports the training loop's sec/kimg, peak GPU memory (torch's
max_memory_allocated, from the run's stats) and peak host memory, and the metrics with NVIDIA's own
detectors (gda_core.metrics: FID and KID against --heldout, CDC's intra-LPIPS over the training
images, RSSA's SCS).

    python benchmarks/gpu_paper256.py --data sketches-10shot/ --heldout sketches-test/        # pickle by URL
    python benchmarks/gpu_paper256.py --source ffhq-res256-mirror-paper256-noaug.pkl --data babies-10/
    python benchmarks/gpu_paper256.py --random-init              # no weights: speed and memory only

--random-init builds a randomly initialised network of the same shape (paper256: 256 px, 512-d z
and w, 8 mapping layers, channel base 16384, max 512, resnet D, as NVIDIA's pickle) and 10 random
target images, for machines without the pickle; its table says so and has no metrics (they would
measure nothing). --tiny swaps in a 32 px network of a few channels: a CPU dry run for tests.
The first run on a machine also compiles gda's CUDA ops (cached afterwards); the first tick of each
run is left out of sec/kimg.
"""

import datetime
import json
import os
import sys

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adaptation  # noqa: E402  (sibling modules: configurations and planning,
import adaptation_report as report  # noqa: E402  the report,
import adaptation_runs as runs  # noqa: E402  and the training runs)

from gda_core import metrics as gda_metrics  # noqa: E402
from gda_core.plugins import default_manager  # noqa: E402
from gda_core.training import build_networks  # noqa: E402
from stylegan2_ada.checkpoint import save_snapshot, sha256  # noqa: E402
from stylegan2_ada.errors import UserError  # noqa: E402
from stylegan2_ada.training_config import preset  # noqa: E402
from stylegan2_ada.training_options import TrainingOptions  # noqa: E402

ROOT = adaptation.ROOT
METRICS = ['fid', 'kid', 'intra_lpips', 'scs']
PAPER256 = dict(resolution=256, options=TrainingOptions(**dict(preset('paper256', 256), zdim=512, cmax=512)))
TINY = dict(resolution=32, options=TrainingOptions(**dict(preset('paper256', 32), cbase=256, cmax=16, map=2,
                                                     zdim=16)))
DEFAULT_ITERS = dict(pickle=5000, random=200, tiny=2)   # CDC's length; enough for speed; a dry run


def random_source(path, shape, seed=0):
    """A gda snapshot of a randomly initialised G (also as G_ema) and D of the given shape."""
    torch.manual_seed(seed)
    G, D = build_networks(shape['options'], shape['resolution'], 3, 0)
    save_snapshot(path, dict(G=G, D=D, G_ema=G))
    return dict(G_params=sum(p.numel() for p in G.parameters()),
                D_params=sum(p.numel() for p in D.parameters()), **{
                    k: getattr(shape['options'], k) for k in ('cbase', 'cmax', 'map', 'zdim', 'fmaps', 'mbstd')
                    if getattr(shape['options'], k) is not None})


def random_target(folder, resolution, count=10, seed=0):
    """count random images (smooth colour fields): speed does not depend on their content."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    for index in range(count):
        small = rng.randint(0, 256, [4, 4, 3]).astype(np.uint8)
        image = PIL.Image.fromarray(small).resize((resolution, resolution), PIL.Image.BILINEAR)
        image.save(os.path.join(folder, f'{index:02d}.png'))
    return folder


def peak_gpu_gb(run_dir):
    """(peak over the run, peak after the first tick) of the ticks' gpumem, each tick's own peak:
    the first tick also holds one-time costs (cuDNN's autotuning with its workspaces)."""
    entries = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl')) if line.strip()]
    peaks = [entry.get('gpumem_gb', 0.0) for entry in entries]
    return (max(peaks, default=None), max(peaks[1:], default=None))


def markdown(result):
    p = result['protocol']
    lines = ['# GPU benchmark: paper256 few-shot adaptation', '',
             f'Command: `{result["command"]}`  ', f'Date: {result["date"]}  ',
             f'Device: {p["device_name"]}  ']
    if p['random_init']:
        lines.append(f'**Randomly initialised network ({p["shape"]}), no pretrained weights: speed '
                     f'and memory only, no metrics.** Network: {p["network"]}  ')
    else:
        lines.append(f'Source: `{p["source"]}`  ')
    lines += [f'Target: `{p["data"]}`; reference: `{p["heldout"]}`  ',
              f'Budget: {p["iters"]} iterations at batch {runs.BATCH}, seeds '
              f'{", ".join(map(str, p["seeds"]))}', '',
              '| method | sec/kimg | peak GPU (GB) | after tick 1 (GB) | peak RSS (MB) | KID ↓ | FID ↓ | intra-LPIPS ↑ | SCS ↑ | status / notes |',
              '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    fmt = report.fmt
    for row in result['rows']:
        lines.append(f'| {row["config"]} | {fmt(row.get("sec_per_kimg"), 1)} | '
                     f'{fmt(row.get("peak_gpu_gb"), 2)} | {fmt(row.get("steady_gpu_gb"), 2)} | '
                     f'{fmt(row.get("peak_rss_mb"), 0)} | '
                     f'{fmt(row.get("kid"), 4)} | {fmt(row.get("fid"), 2)} | '
                     f'{fmt(row.get("intra_lpips"), 3)} | {fmt(row.get("scs"), 3)} | '
                     f'{report.row_notes(row)} |')
    lines += ['', 'sec/kimg: the training loop\'s rate after the first tick. Peak GPU: torch\'s '
              'max_memory_allocated in the training process (0 on a CPU), over the whole run and '
              'over the ticks after the first (which holds cuDNN\'s autotuning). Metrics: NVIDIA\'s '
              'Inception (FID, KID against the reference set) and VGG16 (intra-LPIPS, clusters = the '
              'training images); SCS with Sobel edges.', '']
    return '\n'.join(lines)


def save_results(out, command, protocol, records, planned, inversion):
    """gpu_paper256.json and .md from the runs so far (rows not yet run say so); the result."""
    rows = report.summarise(records, planned, at=protocol['iters'])
    for row in rows:
        for key in ('peak_gpu_gb', 'steady_gpu_gb'):
            values = [r['train'][key] for r in records
                      if r['config'] == row['config'] and r['train'].get(key) is not None]
            row[key] = max(values) if values else None
    result = dict(command=command, date=datetime.datetime.now().isoformat(timespec='seconds'),
                  protocol=protocol, rows=rows, runs=records, rssa_inversion=inversion)
    report.write_results(out, 'gpu_paper256', result, markdown(result))
    return result


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--source', default='ffhq256', show_default=True, help='Source network: NVIDIA pickle path, URL or preset')
@click.option('--data', help='10-shot target folder or zip at the source\'s resolution [required without --random-init]', metavar='PATH')
@click.option('--heldout', help='Reference set for FID/KID [default: --data, strongly biased]', metavar='PATH')
@click.option('--configs', default='all', show_default=True, help='Configurations, as benchmarks/adaptation.py')
@click.option('--iters', type=click.IntRange(min=1), help='Iterations per run [default: 5000; 200 with --random-init; 2 with --tiny]')
@click.option('--seeds', default='0', show_default=True, help='Comma list of seeds')
@click.option('--num-gen', type=click.IntRange(min=2), default=5000, show_default=True, help='Generated images for FID, KID (intra-LPIPS: 1000)')
@click.option('--num-pairs', type=click.IntRange(min=1), default=500, show_default=True, help='Pairs for SCS')
@click.option('--random-init', is_flag=True, help='A randomly initialised paper256 network instead of the pickle: speed and memory only')
@click.option('--tiny', is_flag=True, help='A tiny 32 px random network (implies --random-init): a CPU dry run')
@click.option('--device', default='cuda', show_default=True, help='Torch device of the runs', metavar='DEV')
@click.option('--workdir', default=os.path.join(ROOT, 'build', 'benchmark-gpu'), show_default='build/benchmark-gpu', metavar='DIR')
@click.option('--out', default=os.path.join(ROOT, 'benchmarks', 'results'), show_default='benchmarks/results', help='Where gpu_paper256.json and .md go', metavar='DIR')
def main(source, data, heldout, configs, iters, seeds, num_gen, num_pairs, random_init, tiny, device,
         workdir, out):
    """Fine-tune paper256 with every method plugin on a GPU and report speed, memory and metrics."""
    random_init = random_init or tiny
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise click.UsageError('no CUDA device here; this benchmark needs a GPU (for a CPU dry run: '
                               '--tiny --device cpu)')
    if not random_init and data is None:
        raise click.UsageError('--data is required: the 10-shot target folder (or use --random-init)')
    seeds = adaptation.parse_seeds(seeds)
    try:
        chosen = adaptation.parse_configs(configs)
    except UserError as error:
        raise click.BadParameter(str(error), param_hint='--configs') from None
    iters = iters or DEFAULT_ITERS['tiny' if tiny else 'random' if random_init else 'pickle']
    os.makedirs(workdir, exist_ok=True)
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    network = None
    if random_init:
        shape = TINY if tiny else PAPER256
        source = os.path.join(workdir, f'random-{"tiny" if tiny else "paper256"}.pkl')
        network = random_source(source, shape)
        data = data or random_target(os.path.join(workdir, 'random-target'), shape['resolution'])
        log(f'Randomly initialised {"tiny" if tiny else "paper256"} network ({network}): speed and '
            'memory only')
    heldout = heldout or data
    if not random_init:
        try:
            gda_metrics.check_detectors(METRICS)   # fail now, not after hours of training
        except UserError as error:
            raise click.ClickException(str(error)) from None
    manager = default_manager()
    planned = adaptation.plan(chosen, set(manager.plugins),
                              {name: b.error for name, b in manager.broken.items()},
                              adaptation.detector_available)
    opts = dict(source=source, source_sha256=sha256(source), data=data, heldout=heldout, iters=iters,
                eval_every=iters, seeds=seeds, device=device, workdir=workdir, in_process=False,
                smoke=tiny, threads=1 if device == 'cpu' else os.cpu_count() or 1, num_gen=num_gen,
                num_pairs=num_pairs, detector_key=None, data_of=lambda config: data, rssa_codes={})
    inversion = None
    if any('rssa' in config.plugins and status == 'run' for config, status, _ in planned):
        codes, record = runs.invert_targets(opts, data, log)
        inversion = {data: record}
        if codes:
            opts['rssa_codes'][data] = codes

    def evaluate(snapshot, seed):
        """NVIDIA's metrics of the final snapshot (none for a randomly initialised source)."""
        if random_init:
            return {}
        return adaptation.results_of(gda_metrics.evaluate_network(
            snapshot, METRICS, data=heldout, train_data=data, seed=seed, device=device,
            num_gen=dict(fid=num_gen, kid=num_gen, intra_lpips=1000, scs=num_pairs)))
    records = []
    device_name = (torch.cuda.get_device_name(torch.device(device)) if device.startswith('cuda')
                   else report.machine())
    protocol = dict(source=source, data=data, heldout=heldout, iters=iters, seeds=seeds,
                    random_init=random_init, shape='tiny 32 px' if tiny else 'paper256',
                    network=network, device=device, device_name=device_name)
    command = adaptation.command_line(click.get_current_context(), 'benchmarks/gpu_paper256.py')
    for config, status, _ in planned:
        if status != 'run':
            log(f'{config.name}: {status}')
            continue
        for seed in seeds:
            log(f'Training {config.name} (seed {seed}, {iters} iterations) ...')
            record = runs.train_one(config, seed, opts, evaluate)
            if record['status'] == 'ok':
                record['train']['peak_gpu_gb'], record['train']['steady_gpu_gb'] = \
                    peak_gpu_gb(os.path.dirname(record['snapshot']))
            log(f'{config.name} seed {seed}: {record["status"]}')
            records.append(record)
            # Written after every run: an interrupted benchmark keeps the rows it finished.
            save_results(out, command, protocol, records, planned, inversion)
    result = save_results(out, command, protocol, records, planned, inversion)
    click.echo(markdown(result))
    failed = [row['config'] for row in result['rows'] if row['status'] != 'ok'
              and not row['status'].startswith(('skipped', 'not run'))]
    if failed:
        raise click.ClickException(f'these configurations failed: {", ".join(failed)}')


if __name__ == '__main__':
    main()
