"""Adaptation benchmark on the offline protocol: every method plugin, one budget, one detector.

Protocol: the bundled demo source generator (Noto Emoji faces, 32 px) is fine-tuned by `gda train`
on the 10 bundled Twemoji faces, once per configuration (baseline, each method plugin and the
advertised combinations) with the same iterations, batch and seeds; each final snapshot is then
scored against the 98 held-out Twemoji faces: KID and FID, intra-cluster diversity (CDC's
intra-LPIPS protocol), SCS (RSSA's structural consistency with the source, Sobel edges), plus the
training's sec/kimg and peak memory. No Inception or VGG16 weights exist offline, so every
feature-based metric uses one substitute detector trained here (substitute_detector.py), through
gda_core.metrics's own code (the detector replaces NVIDIA's files). Numbers are comparable within
one table only.

    python benchmarks/adaptation.py                          # the shipped demo source
    python benchmarks/adaptation.py --source SNAPSHOT.pkl    # any 32 px source (e.g. a demo-train snapshot)
    python benchmarks/adaptation.py --configs baseline,idc+patchd --iters 100 --seeds 0,1

Writes <out>/adaptation.json and adaptation.md (default benchmarks/results/). Training runs are
separate `gda train` processes (one thread each unless --threads), so peak memory is per run;
--in-process runs them inside this process instead (faster to start, memory not measured), and
--smoke shortens every plugin's setup work (CI).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine_info  # noqa: E402  (sibling modules of this script)
import substitute_detector  # noqa: E402

import stylegan2_ada  # noqa: E402
from gda_core import demo_data  # noqa: E402
from gda_core import metrics as gda_metrics  # noqa: E402
from gda_core.generate import seed_latents  # noqa: E402
from gda_core.metrics.evaluation import quantize  # noqa: E402
from gda_core.metrics.fid import fid_from_features  # noqa: E402
from gda_core.metrics.kid import kernel_inception_distance  # noqa: E402
from gda_core.plugins import default_manager  # noqa: E402
from stylegan2_ada.checkpoint import sha256  # noqa: E402
from stylegan2_ada.dataset import ImageFolderDataset  # noqa: E402
from stylegan2_ada.detectors import DETECTORS, detector_path  # noqa: E402
from stylegan2_ada.errors import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 4                       # --cfg fewshot's batch (CDC); every method trains at it
DEFAULT_ITERS = 300             # the demo's length (gda_core/demo_defaults.py)
METRICS = ['kid', 'fid', 'intra_lpips', 'scs']
SOURCE_SAMPLE_SEED = 10_000     # z seeds of the source samples the detector trains on


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    plugins: tuple
    needs: tuple = ()           # detector files without which the method cannot run
    note: str = ''


CONFIGS = [
    Config('baseline', ()),
    Config('freezed', ('freezed',)),
    Config('diffaugment', ('diffaugment',)),
    Config('idc', ('idc',)),
    Config('patchd', ('patchd',)),
    Config('idc+patchd', ('idc', 'patchd'), note='CDC'),
    Config('rssa', ('rssa',), note='rssa alone trains against the core D'),
    Config('rssa+patchd', ('rssa', 'patchd'), note="RSSA's paper setting (CDC's D side)"),
    Config('genda', ('genda',)),
    Config('genda+diffaugment', ('genda', 'diffaugment')),
    Config('adafm', ('adafm',)),
    Config('disp', ('disp',), needs=('vgg16',), note="DISP-Vgg16: VGG16 fc7 priors"),
    Config('ewc', ('ewc',)),
]
CONFIG_NAMES = [config.name for config in CONFIGS]

# --smoke: options that shorten setup work only (Fisher information; rssa's inversion below).
SMOKE_OPTIONS = {'ewc': ['--ewc-samples', '4']}
SMOKE_INVERT_STEPS = 2


# -- planning ------------------------------------------------------------------------------------

def parse_configs(text):
    """Config objects from 'all' or 'baseline,idc+patchd,...' (any '+' combination of plugins)."""
    if text in (None, '', 'all'):
        return list(CONFIGS)
    known = {config.name: config for config in CONFIGS}
    result = []
    for name in [part.strip() for part in text.split(',') if part.strip()]:
        if name in known:
            result.append(known[name])
        elif 'baseline' in name.split('+') or not all(name.split('+')):
            raise UserError(f'--configs: cannot read {name!r}; give names like baseline,idc,idc+patchd')
        else:
            plugins = tuple(name.split('+'))
            result.append(Config(name, plugins, needs=('vgg16',) if 'disp' in plugins else ()))
    if not result:
        raise UserError('--configs is empty; give "all" or names like baseline,idc+patchd')
    return result


def detector_available(name):
    """Whether NVIDIA's detector file is here (option, variable or cache), without downloading."""
    try:
        detector_path(name, allow_download=False)
        return True
    except UserError:
        return False


def plan(configs, installed, broken, available):
    """[(config, status, notes)]: status 'run', 'skipped: ...' or 'not run: needs ...'."""
    planned = []
    for config in configs:
        missing = [name for name in config.plugins if name not in installed]
        notes = [config.note] if config.note else []
        if missing:
            why = '; '.join(f'{name} failed to load ({broken[name]})' if name in broken
                            else f'plugin {name} is not installed' for name in missing)
            planned.append((config, f'skipped: {why}', notes))
            continue
        lacking = [name for name in config.needs if not available(name)]
        if lacking:
            files = ', '.join(f'{DETECTORS[name].file} ({DETECTORS[name].purpose.split(",")[0]})'
                              for name in lacking)
            planned.append((config, f'not run: needs {files}, not available offline', notes))
            continue
        if 'rssa' in config.plugins:
            notes.append('targets inverted once by `gda invert`, codes shared by the rssa rows'
                         + ('' if available('vgg16') else ', with MSE only (vgg16.pt unavailable)'))
        planned.append((config, 'run', notes))
    return planned


# -- training ------------------------------------------------------------------------------------

def train_args(config, source, data, outdir, iters, seed, device, smoke, rssa_codes=None):
    """The `gda train` command line of one run: same budget, batch and seed for every method."""
    args = ['train', '--source', source, '--data', data, '--outdir', outdir,
            '--desc', config.name.replace('+', '-'), '--iters', str(iters),
            '--kimg', repr(iters * BATCH / 1000), '--batch', str(BATCH), '--seed', str(seed),
            '--tick', repr(max(iters // 10, 1) * BATCH / 1000), '--snap', '0']
    if device:
        args += ['--device', device]
    for name in config.plugins:
        args += ['--plugin', name]
        if smoke:
            args += SMOKE_OPTIONS.get(name, [])
        if name == 'rssa' and rssa_codes:
            args += ['--rssa-codes', rssa_codes]
    return args


def invert_targets(opts, log):
    """rssa's W+ codes of the targets, inverted once with `gda invert` (its defaults) and shared
    by every rssa run: (path, seconds)."""
    path = os.path.join(opts['workdir'], 'rssa-codes.npz')
    args = ['invert', '--network', opts['source'], '--data', opts['data'], '--out', path]
    if opts['smoke']:
        args += ['--steps', str(SMOKE_INVERT_STEPS)]
    if opts['device']:
        args += ['--device', opts['device']]
    log('Inverting the targets for rssa (gda invert) ...')
    runner = run_in_process if opts['in_process'] else run_subprocess
    log_path = os.path.join(opts['workdir'], 'invert.log')
    usage = runner(args, log_path, opts['threads'])
    if usage['returncode'] != 0 or not os.path.isfile(path):
        return None, dict(usage, status=f'failed: {last_log_line(log_path)}', command='gda ' + ' '.join(args))
    return path, dict(usage, status='ok', command='gda ' + ' '.join(args))


def thread_env(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def run_subprocess(args, log_path, threads):
    """Run `gda train` in its own process: exit code, wall and CPU seconds, peak RSS (MB)."""
    with open(log_path, 'w') as out:
        start = time.time()
        proc = subprocess.Popen([sys.executable, '-m', 'gda_core', *args], stdout=out,
                                stderr=subprocess.STDOUT, env=thread_env(threads))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return dict(returncode=proc.returncode, wall_s=time.time() - start,
                cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024)


def run_in_process(args, log_path, threads):
    """Run `gda train` through the CLI inside this process (peak memory not measurable)."""
    from gda_core.cli import main
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    with open(log_path, 'w') as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main.main(list(args), prog_name='gda', standalone_mode=False)
            code = 0
        except SystemExit as error:
            code = error.code if isinstance(error.code, int) else 1
        except Exception:   # recorded in the run's log and as a failed row
            traceback.print_exc(file=out)
            code = 1
    torch.set_num_threads(previous)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return dict(returncode=code, wall_s=time.time() - start, cpu_s=cpu, peak_rss_mb=None)


def run_dir_of(outdir):
    runs = [os.path.join(outdir, name) for name in sorted(os.listdir(outdir))
            if os.path.isdir(os.path.join(outdir, name))] if os.path.isdir(outdir) else []
    return runs[-1] if runs else None


def loop_speed(stats_path):
    """(sec/kimg, sec/iter) of the training loop from stats.jsonl, leaving out the first tick
    (warm-up: first calls, regularisation set-up) when there are later ones."""
    entries = [json.loads(line) for line in open(stats_path) if line.strip()]
    if not entries:
        return None, None
    first, last = entries[0], entries[-1]
    if len(entries) > 1 and last['kimg'] > first['kimg']:
        seconds = last['time'] - first['time']
        return seconds / (last['kimg'] - first['kimg']), seconds / (last['iteration'] - first['iteration'])
    return last['time'] / last['kimg'], last['time'] / last['iteration']


def last_log_line(path):
    lines = [line.strip() for line in open(path, errors='replace') if line.strip()]
    errors = [line for line in lines if line.startswith('Error')]
    return (errors or lines or ['(no output)'])[-1]


def train_one(config, seed, opts):
    """Train one configuration with one seed; the run's record (no metrics yet)."""
    outdir = os.path.join(opts['workdir'], 'runs', f'{config.name}-seed{seed}')
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)   # this benchmark's own earlier run of the same row
    os.makedirs(outdir)
    log_path = os.path.join(outdir, 'train.log')
    args = train_args(config, opts['source'], opts['data'], outdir, opts['iters'], seed,
                      opts['device'], opts['smoke'], opts.get('rssa_codes'))
    runner = run_in_process if opts['in_process'] else run_subprocess
    usage = runner(args, log_path, opts['threads'])
    record = dict(config=config.name, plugins=list(config.plugins), seed=seed,
                  command='gda ' + ' '.join(args), log=log_path, train=usage)
    run_dir = run_dir_of(outdir)
    snapshots = sorted(name for name in os.listdir(run_dir) if name.startswith('network-snapshot-')) \
        if run_dir else []
    if usage['returncode'] != 0 or not snapshots:
        record['status'] = f'failed (exit {usage["returncode"]}): {last_log_line(log_path)}'
        return record
    record['snapshot'] = os.path.join(run_dir, snapshots[-1])
    sec_per_kimg, sec_per_iter = loop_speed(os.path.join(run_dir, 'stats.jsonl'))
    usage.update(sec_per_kimg=sec_per_kimg, sec_per_iter=sec_per_iter)
    record['status'] = 'ok'
    return record


# -- the substitute detector and the metrics -----------------------------------------------------

def dataset_images(path):
    dataset = ImageFolderDataset(path)
    return torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))


@torch.no_grad()
def source_samples(source, count, device='cpu'):
    """uint8 samples of the source generator (fixed seeds, constant noise): the Noto domain."""
    loaded = stylegan2_ada.load(source)
    G = (loaded.get('G_ema') or loaded['G']).to(device).eval()
    z = seed_latents(range(SOURCE_SAMPLE_SEED, SOURCE_SAMPLE_SEED + count), G.z_dim).to(device)
    c = torch.zeros([count, G.c_dim], device=device)
    return torch.cat([quantize(G(zz, cc, noise_mode='const')).cpu()
                      for zz, cc in zip(z.split(64), c.split(64))])


def build_detector(opts, log):
    """The substitute detector for this source and these images (cached), and its description."""
    target, heldout = dataset_images(opts['data']), dataset_images(opts['heldout'])
    if target.shape[1] != 3:
        target, heldout = target[:, :1].repeat(1, 3, 1, 1), heldout[:, :1].repeat(1, 3, 1, 1)
    samples = source_samples(opts['source'], len(target) + len(heldout))
    if samples.shape[1] != 3:
        samples = samples[:, :1].repeat(1, 3, 1, 1)
    images = torch.cat([target, heldout, samples])
    settings = dict(steps=opts['detector_steps'])
    encoder, info = substitute_detector.load_or_train(images, seed=opts['detector_seed'],
                                                      use_cache=opts['cache'], log=log, **settings)
    info.update(description=substitute_detector.DESCRIPTION, limits=substitute_detector.LIMITS,
                training_images=dict(target=len(target), heldout=len(heldout),
                                     source_samples=len(samples)))
    return encoder, info


def metric_options(opts, detector, seed):
    return dict(detector_paths=dict(inception=detector, vgg16=detector), seed=seed,
                num_gen=dict(kid=opts['num_gen'], fid=opts['num_gen'],
                             intra_lpips=opts['num_gen'], scs=opts['num_pairs']),
                batch=64, use_cache=opts['cache'], device='cpu')


def results_of(records):
    values = {}
    for name, record in records.items():
        values.update(record['results'])
        if name == 'intra_lpips':
            values['intra_lpips_clusters'] = record['protocol']['clusters_used']
    return values


def evaluate_run(record, opts, detector):
    start = time.time()
    try:
        records = gda_metrics.evaluate_network(record['snapshot'], METRICS, data=opts['heldout'],
                                               train_data=opts['data'],
                                               **metric_options(opts, detector, record['seed']))
        record['metrics'] = results_of(records)
    except Exception as error:   # a method whose snapshot cannot be scored is a failed row
        record['status'] = f'metrics failed: {type(error).__name__}: {str(error).splitlines()[0]}'
    record['eval_s'] = time.time() - start
    return record


def reference_rows(opts, detector, log):
    """What the detector says about fixed sets: the source unadapted, the 10 shots themselves, and
    two halves of the held-out set (the noise floor of this reference set)."""
    extract = lambda images: detector(images.float(), return_features=True).double().numpy()  # noqa: E731
    with torch.no_grad():
        held = extract(dataset_images(opts['heldout']))
        shots = extract(dataset_images(opts['data']))
    rows = dict(
        ten_shots=dict(kid=kernel_inception_distance(shots, held), fid=fid_from_features(shots, held)),
        heldout_halves=dict(kid=kernel_inception_distance(held[0::2], held[1::2]),
                            fid=fid_from_features(held[0::2], held[1::2])))
    log('Scoring the source generator (not adapted) ...')
    records = gda_metrics.evaluate_network(opts['source'], ['kid', 'fid', 'intra_lpips'],
                                           data=opts['heldout'], train_data=opts['data'],
                                           **metric_options(opts, detector, 0))
    rows['source'] = dict(results_of(records), scs=1.0)
    return rows


# -- summary -------------------------------------------------------------------------------------

def summarise(records, planned):
    """One row per configuration: mean (and std over seeds) of every number."""
    rows = []
    for config, status, notes in planned:
        mine = [r for r in records if r['config'] == config.name]
        row = dict(config=config.name, plugins=list(config.plugins), notes=notes)
        if status != 'run':
            row['status'] = status
            rows.append(row)
            continue
        failed = [r['status'] for r in mine if r['status'] != 'ok']
        row['status'] = (failed[0] if failed else 'ok' if mine
                         else 'not finished: the benchmark stopped before this run')
        good = [r for r in mine if r['status'] == 'ok']
        for key in ('kid', 'fid', 'intra_lpips', 'scs'):
            values = [r['metrics'][key] for r in good if key in r.get('metrics', {})]
            if values:
                row[key] = float(np.mean(values))
                row[key + '_std'] = float(np.std(values)) if len(values) > 1 else None
        for key in ('sec_per_kimg', 'peak_rss_mb', 'wall_s', 'cpu_s'):
            values = [r['train'][key] for r in good if r['train'].get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        rows.append(row)
    return rows


def write_results(out, stem, result, table):
    """<out>/<stem>.json and .md, each replaced whole (a reader never sees half a file)."""
    os.makedirs(out, exist_ok=True)
    for name, text in ((stem + '.json', json.dumps(result, indent=2)), (stem + '.md', table)):
        with open(os.path.join(out, name + '.tmp'), 'w') as f:
            f.write(text)
        os.replace(os.path.join(out, name + '.tmp'), os.path.join(out, name))


def row_notes(row):
    """A table row's last cell: its status unless 'ok', then its notes ('ok' if neither)."""
    return '; '.join(([] if row['status'] == 'ok' else [row['status']]) + row['notes']) or 'ok'


def fmt(value, digits=3, std=None):
    if value is None:
        return '-'
    text = f'{value:.{digits}f}'
    return text + (f' ± {std:.{digits}f}' if std else '')


def markdown(result):
    p, d = result['protocol'], result['detector']
    lines = ['# Adaptation benchmark (offline protocol)', '',
             f'Command: `{result["command"]}`  ', f'Date: {result["date"]}  ',
             f'Source: `{p["source"]}` (sha256 {p["source_sha256"][:12]})  ',
             f'Target: `{p["data"]}` ({p["target_images"]} images); reference: `{p["heldout"]}` '
             f'({p["heldout_images"]} held-out images)  ',
             f'Budget: {p["iters"]} iterations at batch {p["batch"]} ({p["iters"] * p["batch"] / 1000:g} kimg), '
             f'seeds {", ".join(map(str, p["seeds"]))}, {p["threads"]} thread(s) per run; metrics on '
             f'{p["num_gen"]} generated images ({p["num_pairs"]} pairs for SCS)  ',
             f'Machine: {p["machine"]}; total time {result["runtime_s"] / 60:.1f} min '
             f'(load average {p["load_start"]} at the start, {p["load_end"]} at the end)', '',
             '| method | KID ↓ | FID ↓ | intra-LPIPS ↑ | SCS ↑ | sec/kimg | peak RSS (MB) | status / notes |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    src = result['reference']['source']
    lines.append(f'| *source, not adapted* | {fmt(src["kid"])} | {fmt(src["fid"], 2)} | '
                 f'{fmt(src["intra_lpips"])} | 1 | - | - | reference row |')
    for row in result['rows']:
        lines.append(f'| {row["config"]} | {fmt(row.get("kid"), 3, row.get("kid_std"))} | '
                     f'{fmt(row.get("fid"), 2, row.get("fid_std"))} | '
                     f'{fmt(row.get("intra_lpips"), 3, row.get("intra_lpips_std"))} | '
                     f'{fmt(row.get("scs"), 3, row.get("scs_std"))} | {fmt(row.get("sec_per_kimg"), 0)} | '
                     f'{fmt(row.get("peak_rss_mb"), 0)} | {row_notes(row)} |')
    ref = result['reference']
    lines += ['', 'Reference sets, same detector: the 10 shots themselves vs the held-out images '
              f'KID {fmt(ref["ten_shots"]["kid"])} (FID {fmt(ref["ten_shots"]["fid"], 2)}); one half '
              f'of the held-out images vs the other KID {fmt(ref["heldout_halves"]["kid"])} '
              f'(FID {fmt(ref["heldout_halves"]["fid"], 2)}): differences between methods smaller '
              'than that are noise.', '',
              '**Substitute detector.** ' + d['description'] + f' ({d["settings"]["steps"]} steps, seed '
              f'{d["seed"]}; final NT-Xent {d["final_loss"]:.3f}, augmented-view retrieval top-1 '
              f'{d["retrieval_top1"]:.2f} over {d["images"]} images). Limits:', '']
    lines += [f'- {limit}' for limit in d['limits']]
    inversion = result.get('rssa_inversion')
    if inversion:
        lines += ['', f'rssa\'s target codes: `{inversion["command"]}`, {inversion["status"]}, '
                  f'{inversion["wall_s"]:.0f} s, once for all rssa rows (not in their times).']
    lines += ['', '**Columns.** KID, FID: substitute embedding of generated vs held-out images '
              '(gda_core.metrics kid/fid; KID as computed, not scaled by 10^3, in the embedding\'s '
              'own units). ± is the standard deviation over seeds. intra-LPIPS: CDC\'s intra-cluster protocol with the '
              'substitute\'s unit-weight LPIPS, clusters = the 10 shots. SCS: RSSA\'s score with '
              'Sobel edges, source vs adapted for the same z. sec/kimg: the training loop\'s '
              'wall-clock rate after the first tick, one CPU thread per run on a shared machine. '
              'Peak RSS: the training process\'s maximum resident memory, Python and torch included.',
              '']
    return '\n'.join(lines)


def machine():
    return f'{machine_info.cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}'


def load_average():
    return '{:.1f}, {:.1f}, {:.1f}'.format(*os.getloadavg())


# -- command -------------------------------------------------------------------------------------

def command_line(ctx, script='benchmarks/adaptation.py'):
    """The script's command with the options given explicitly (what reproduces the table)."""
    parts = ['python ' + script]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        flag = param.opts[0]
        if param.is_flag:
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return ' '.join(parts)


def default_source():
    if demo_data.has_source_model():
        return demo_data.SOURCE_MODEL
    raise click.UsageError('the bundled demo source generator is not shipped in this checkout yet; '
                           'pass --source SNAPSHOT.pkl (e.g. a snapshot of examples/demo/train_source.sh)')


def parse_seeds(text):
    try:
        seeds = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise click.BadParameter(f'{text!r} is not a comma list of integers, e.g. 0,1,2') from None
    if not seeds:
        raise click.BadParameter('give at least one seed, e.g. 0')
    return seeds


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--source', help='32 px source network [default: the bundled demo source]', metavar='PKL')
@click.option('--data', default=demo_data.TARGET_DIR, show_default='the 10 bundled Twemoji faces', help='Few-shot target images', metavar='PATH')
@click.option('--heldout', default=demo_data.HELDOUT_ZIP, show_default='the 98 held-out Twemoji faces', help='Reference images for KID/FID', metavar='PATH')
@click.option('--configs', default='all', show_default=True, help=f'Comma list of {", ".join(CONFIG_NAMES)} or any plugin+plugin combination')
@click.option('--iters', type=click.IntRange(min=1), default=DEFAULT_ITERS, show_default=True, help=f'Training iterations per run (batch {BATCH})')
@click.option('--seeds', default='0', show_default=True, help='Comma list of seeds (training and metrics); rows average over them')
@click.option('--num-gen', type=click.IntRange(min=2), default=1000, show_default=True, help='Generated images for KID, FID and intra-LPIPS')
@click.option('--num-pairs', type=click.IntRange(min=1), default=500, show_default=True, help='Source/adapted pairs for SCS')
@click.option('--detector-steps', type=click.IntRange(min=1), default=substitute_detector.DEFAULTS['steps'], show_default=True, help='Training steps of the substitute detector')
@click.option('--detector-seed', type=int, default=0, show_default=True, help='Seed of the substitute detector')
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True, help='CPU threads per training run (more threads on a busy machine are much slower)')
@click.option('--jobs', type=click.IntRange(min=1), default=1, show_default=True, help='Training runs at once (subprocesses)')
@click.option('--device', help='Torch device of the training runs [default: gda train\'s]', metavar='DEV')
@click.option('--workdir', default=os.path.join(ROOT, 'build', 'benchmark-adaptation'), show_default='build/benchmark-adaptation', help='Where the runs go', metavar='DIR')
@click.option('--out', default=os.path.join(ROOT, 'benchmarks', 'results'), show_default='benchmarks/results', help='Where adaptation.json and .md go', metavar='DIR')
@click.option('--in-process', is_flag=True, help='Run gda train inside this process (no per-run memory figure)')
@click.option('--smoke', is_flag=True, help='Shorten plugins\' setup work (rssa inversion, ewc Fisher): CI only')
@click.option('--no-cache', 'cache', is_flag=True, flag_value=False, default=True, help='Retrain the detector and recompute reference features')
def main(source, data, heldout, configs, iters, seeds, num_gen, num_pairs, detector_steps, detector_seed,
         threads, jobs, device, workdir, out, in_process, smoke, cache):
    """Fine-tune the demo source with every method plugin and score the results (see the module
    docstring)."""
    started = time.time()
    load_start = load_average()
    seeds = parse_seeds(seeds)
    source = source or default_source()
    for path, flag in ((source, '--source'), (data, '--data'), (heldout, '--heldout')):
        if not os.path.exists(path):
            raise click.BadParameter(f'{path} does not exist', param_hint=flag)
    if jobs > 1 and in_process:
        raise click.UsageError('--jobs runs separate processes; drop --in-process or --jobs')
    try:
        chosen = parse_configs(configs)
    except UserError as error:
        raise click.BadParameter(str(error), param_hint='--configs') from None
    torch.set_num_threads(threads)
    os.makedirs(workdir, exist_ok=True)
    given_source = source
    source = os.path.join(workdir, 'source.pkl')   # a copy: a training run may rotate the original
    shutil.copyfile(given_source, source)
    opts = dict(source=source, data=data, heldout=heldout, iters=iters, num_gen=num_gen,
                num_pairs=num_pairs, detector_steps=detector_steps, detector_seed=detector_seed,
                threads=threads, device=device, workdir=workdir, in_process=in_process, smoke=smoke,
                cache=cache)
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    manager = default_manager()
    planned = plan(chosen, set(manager.plugins), {name: b.error for name, b in manager.broken.items()},
                   detector_available)
    for config, status, _ in planned:
        if status != 'run':
            log(f'{config.name}: {status}')

    try:
        detector, detector_info = build_detector(opts, log)
        reference = reference_rows(opts, detector, log)
    except UserError as error:
        raise click.ClickException(str(error)) from None

    jobs_list = [(config, seed) for config, status, _ in planned if status == 'run' for seed in seeds]
    inversion = None
    if any('rssa' in config.plugins for config, _ in jobs_list):
        opts['rssa_codes'], inversion = invert_targets(opts, log)
        if opts['rssa_codes'] is None:
            log(f'rssa: the inversion failed ({inversion["status"]}); the rssa rows invert by themselves')
    records = []
    command = command_line(click.get_current_context())

    def save():
        """adaptation.json and .md from the runs so far (written after every run, so an
        interrupted benchmark keeps what it finished); the result."""
        result = dict(
            command=command, date=datetime.datetime.now().isoformat(timespec='seconds'),
            protocol=dict(source=given_source, source_sha256=sha256(source), data=data, heldout=heldout,
                          target_images=len(ImageFolderDataset(data)),
                          heldout_images=len(ImageFolderDataset(heldout)), iters=iters, batch=BATCH,
                          seeds=seeds, threads=threads, jobs=jobs, in_process=in_process, smoke=smoke,
                          num_gen=num_gen, num_pairs=num_pairs, metrics=METRICS, machine=machine(),
                          load_start=load_start, load_end=load_average()),
            detector={k: v for k, v in detector_info.items() if k != 'cached'},
            reference=reference, rows=summarise(records, planned), runs=records,
            rssa_inversion=inversion, runtime_s=time.time() - started)
        write_results(out, 'adaptation', result, markdown(result))
        return result

    def finish(record):
        if record['status'] == 'ok':
            evaluate_run(record, opts, detector)
        train = record['train']
        scores = ', '.join(f'{k} {v:.4f}' for k, v in record.get('metrics', {}).items()
                           if k in ('kid', 'fid', 'intra_lpips', 'scs'))
        log(f'{record["config"]} seed {record["seed"]}: {record["status"]}; train {train["wall_s"]:.0f} s'
            + (f', {train["sec_per_kimg"]:.0f} sec/kimg' if train.get('sec_per_kimg') else '')
            + (f'; {scores}' if scores else ''))
        records.append(record)
        save()

    if jobs > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(train_one, config, seed, opts) for config, seed in jobs_list]
            for future in futures:
                finish(future.result())
    else:
        for config, seed in jobs_list:
            log(f'Training {config.name} (seed {seed}, {iters} iterations) ...')
            finish(train_one(config, seed, opts))

    result = save()
    click.echo(markdown(result))
    failed = [row['config'] for row in result['rows'] if row['status'] != 'ok' and not
              row['status'].startswith(('skipped', 'not run'))]
    if failed:
        raise click.ClickException(f'these configurations failed: {", ".join(failed)} (see their '
                                   f'train.log under {os.path.join(workdir, "runs")})')


if __name__ == '__main__':
    main()
