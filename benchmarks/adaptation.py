"""Adaptation benchmark on the offline protocol: every method plugin, one budget, one detector.

Protocol (defaults): the bundled demo source generator (trained by gda on all 3,786 Noto emoji,
32 px) is fine-tuned by `gda train` on the 10 bundled Twemoji shots, once per configuration
(baseline, each method plugin, the advertised combinations, and one-shot rows) with the same
iterations, batch and seeds. Every --eval-every iterations the run's snapshot is scored against the
3,776 held-out Twemoji emoji: KID and FID, intra-cluster diversity (CDC's intra-LPIPS), SCS
(RSSA's structural consistency with the source, Sobel edges) and correspondence (for the same z, is
the adapted image nearest to the Twemoji version of the emoji the source drew? see
correspondence.py), plus the training's sec/kimg and peak memory. No Inception or VGG16 weights
exist offline, so every feature-based metric uses one substitute detector trained here on the
source and target domains' images (substitute_detector.py). Numbers are comparable within one
table only.

    python benchmarks/adaptation.py --quick                  # baseline, CDC, RSSA, GenDA; 1 seed
    python benchmarks/adaptation.py                          # every configuration, seeds 0,1,2
    python benchmarks/adaptation.py --source S.pkl --target shots/ --heldout rest.zip \
        --source-data source-domain.zip                      # your own domain pair

Runs already finished in --workdir are skipped and a stopped run resumes (`gda train --resume`
between evaluation points), so the command can be run again after an interruption. Writes
<out>/adaptation.json, adaptation.md and adaptation-<metric>.png (one curve per configuration over
the iterations). Training runs are separate `gda train` processes (one thread each unless
--threads), so peak memory is per run; --in-process runs them inside this process instead (faster
to start, memory not measured), and --smoke shortens every plugin's setup work (CI).
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
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine_info  # noqa: E402  (sibling modules of this script)
import correspondence as corr  # noqa: E402
import curves  # noqa: E402
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
DEFAULT_ITERS = 1000            # 4 kimg at batch 4: the curves show where plain fine-tuning turns
QUICK_ITERS, QUICK_EVAL_EVERY = 500, 125   # --quick: four points per curve, under half an hour
DEFAULT_EVAL_EVERY = 250        # iterations between evaluation points (1 kimg at batch 4)
DEFAULT_SEEDS = '0,1,2'
METRICS = ['kid', 'fid', 'intra_lpips', 'scs']            # gda_core.metrics, per evaluation point
COLUMNS = METRICS + ['correspondence']                     # every number a row and a curve carry
SOURCE_SAMPLE_SEED = 10_000     # z seeds of the source samples the detector trains on (no --source-data)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    plugins: tuple
    needs: tuple = ()           # detector files without which the method cannot run
    note: str = ''
    shots: int = None           # train on the first N target images only (None: --shots, or all)


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
    Config('adam', ('adam',), note='importance probing (500 iterations) in setup, cached'),
    Config('rick', ('rick',), note='official schedule: warm-up 250, Fisher every 50'),
    Config('baseline-1shot', (), shots=1, note='one shot: the first target image'),
    Config('genda-1shot', ('genda',), shots=1, note="GenDA's one-shot setting"),
]
CONFIG_NAMES = [config.name for config in CONFIGS]
QUICK_CONFIGS = 'baseline,idc+patchd,rssa+patchd,genda'   # --quick: the papers' headline methods

# --smoke: options that shorten setup work only (Fisher information; rssa's inversion below).
SMOKE_OPTIONS = {'ewc': ['--ewc-samples', '4'],
                 'adam': ['--adam-probe-iters', '2', '--adam-fisher-samples', '4'],
                 'rick': ['--rick-warmup', '0', '--rick-fisher-freq', '1', '--rick-fisher-batches', '1']}
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

def eval_points(iters, every):
    """The iterations at which a run is scored: every `every`, and the last one."""
    points = list(range(every, iters, every)) + [iters]
    return sorted(set(points))


def train_args(config, source, data, outdir, iters, seed, device, smoke, rssa_codes=None,
               total_iters=None, eval_every=None):
    """The `gda train` command line of a run's first segment (to `iters`): same budget, batch and
    seed for every method; about ten ticks (log lines) per run, a snapshot at the end only."""
    total_iters = total_iters or iters
    every = max(min(eval_every or total_iters, total_iters // 10), 1)
    args = ['train', '--source', source, '--data', data, '--outdir', outdir,
            '--desc', config.name.replace('+', '-'), '--iters', str(iters),
            '--kimg', repr(total_iters * BATCH / 1000), '--batch', str(BATCH), '--seed', str(seed),
            '--tick', repr(every * BATCH / 1000), '--snap', '0']
    if device:
        args += ['--device', device]
    for name in config.plugins:
        args += ['--plugin', name]
        if smoke:
            args += SMOKE_OPTIONS.get(name, [])
        if name == 'rssa' and rssa_codes:
            args += ['--rssa-codes', rssa_codes]
    return args


def invert_targets(opts, data, log):
    """rssa's W+ codes of the target images, inverted once with `gda invert` (its defaults) and
    shared by every rssa run on that data: (path, record)."""
    path = os.path.join(opts['workdir'], f'rssa-codes-{os.path.basename(os.path.normpath(data))}.npz')
    args = ['invert', '--network', opts['source'], '--data', data, '--out', path]
    if opts['smoke']:
        args += ['--steps', str(SMOKE_INVERT_STEPS)]
    if opts['device']:
        args += ['--device', opts['device']]
    if os.path.isfile(path):
        return path, dict(status='ok (earlier run)', command='gda ' + ' '.join(args), wall_s=0.0)
    log(f'Inverting {data} for rssa (gda invert) ...')
    runner = run_in_process if opts['in_process'] else run_subprocess
    log_path = os.path.join(opts['workdir'], 'invert.log')
    usage = runner(args, log_path, opts['threads'])
    if usage['returncode'] != 0 or not os.path.isfile(path):
        return None, dict(usage, status=f'failed: {last_log_line(log_path)}', command='gda ' + ' '.join(args))
    return path, dict(usage, status='ok', command='gda ' + ' '.join(args))


def thread_env(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def run_subprocess(args, log_path, threads):
    """Run a gda command in its own process: exit code, wall and CPU seconds, peak RSS (MB)."""
    with open(log_path, 'a') as out:
        start = time.time()
        proc = subprocess.Popen([sys.executable, '-m', 'gda_core', *args], stdout=out,
                                stderr=subprocess.STDOUT, env=thread_env(threads))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return dict(returncode=proc.returncode, wall_s=time.time() - start,
                cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024)


def run_in_process(args, log_path, threads):
    """Run a gda command through the CLI inside this process (peak memory not measurable)."""
    from gda_core.cli import main
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    with open(log_path, 'a') as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
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


def snapshots_of(run_dir):
    return sorted(os.path.join(run_dir, name) for name in os.listdir(run_dir)
                  if name.startswith('network-snapshot-')) if run_dir else []


def stats_of(run_dir):
    path = os.path.join(run_dir, 'stats.jsonl') if run_dir else None
    if not path or not os.path.isfile(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


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


def read_jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()] if os.path.isfile(path) else []


def append_jsonl(path, entry):
    with open(path, 'a') as file:
        file.write(json.dumps(entry) + '\n')


def run_protocol(config, seed, opts):
    """What a finished run must match to be reused by a later invocation."""
    return dict(config=config.name, plugins=list(config.plugins), seed=seed, iters=opts['iters'],
                eval_every=opts['eval_every'], batch=BATCH, source_sha256=opts['source_sha256'],
                data=opts['data_of'](config), smoke=opts['smoke'], device=opts['device'],
                num_gen=opts['num_gen'], num_pairs=opts['num_pairs'], detector=opts['detector_key'])


def train_one(config, seed, opts, evaluate):
    """Train one configuration with one seed in segments, scoring the snapshot at every evaluation
    point (`evaluate(snapshot, seed) -> metrics`); resumes a stopped run and reuses a finished one.
    Returns the run's record."""
    outdir = os.path.join(opts['workdir'], 'runs', f'{config.name}-seed{seed}')
    protocol = run_protocol(config, seed, opts)
    protocol_path, evals_path = os.path.join(outdir, 'protocol.json'), os.path.join(outdir, 'evals.jsonl')
    if os.path.isdir(outdir) and (not os.path.isfile(protocol_path)
                                  or json.load(open(protocol_path)) != protocol):
        shutil.rmtree(outdir)   # an earlier run of this row under other settings
    os.makedirs(outdir, exist_ok=True)
    with open(protocol_path, 'w') as file:
        json.dump(protocol, file, indent=1)
    log_path = os.path.join(outdir, 'train.log')
    data = opts['data_of'](config)
    first_args = train_args(config, opts['source'], data, outdir, opts['eval_every'], seed,
                            opts['device'], opts['smoke'], opts['rssa_codes'].get(data),
                            total_iters=opts['iters'], eval_every=opts['eval_every'])
    record = dict(config=config.name, plugins=list(config.plugins), seed=seed, shots=config.shots,
                  command='gda ' + ' '.join(train_args(
                      config, opts['source'], data, outdir, opts['iters'], seed, opts['device'],
                      opts['smoke'], opts['rssa_codes'].get(data), eval_every=opts['eval_every'])),
                  log=log_path, segments=[])
    runner = run_in_process if opts['in_process'] else run_subprocess
    done = {entry['iteration']: entry for entry in read_jsonl(evals_path)}
    for point in eval_points(opts['iters'], opts['eval_every']):
        if point in done:
            continue
        run_dir = run_dir_of(outdir)
        reached = (stats_of(run_dir) or [dict(iteration=0)])[-1]['iteration'] if snapshots_of(run_dir) else 0
        if run_dir and not snapshots_of(run_dir):
            shutil.rmtree(run_dir)   # stopped before its first snapshot: start the run again
            run_dir = None
        args = first_args if run_dir is None else ['train', '--resume', run_dir, '--iters', str(point)]
        if point == opts['eval_every'] or run_dir is None or reached < point:
            usage = runner(args, log_path, opts['threads'])
            record['segments'].append(dict(usage, to_iteration=point))
            if usage['returncode'] != 0:
                record['status'] = f'failed (exit {usage["returncode"]}): {last_log_line(log_path)}'
                return record
        run_dir = run_dir_of(outdir)
        snapshots = snapshots_of(run_dir)
        if not snapshots:
            record['status'] = f'failed: no snapshot ({last_log_line(log_path)})'
            return record
        entry = dict(iteration=point, snapshot=os.path.basename(snapshots[-1]))
        try:
            entry.update(evaluate(snapshots[-1], seed))
        except Exception as error:   # a method whose snapshot cannot be scored is a failed row
            record['status'] = f'metrics failed: {type(error).__name__}: {str(error).splitlines()[0]}'
            return record
        append_jsonl(evals_path, entry)
        done[point] = entry
        for old in snapshots[:-1]:
            os.remove(old)   # scored; only the newest is needed to resume
    run_dir = run_dir_of(outdir)
    record['snapshot'] = snapshots_of(run_dir)[-1]
    record['evals'] = [done[point] for point in sorted(done)]
    segments = record['segments'] or []
    sec_per_kimg, sec_per_iter = loop_speed(os.path.join(run_dir, 'stats.jsonl'))
    peaks = [s['peak_rss_mb'] for s in segments if s.get('peak_rss_mb') is not None]
    record['train'] = dict(sec_per_kimg=sec_per_kimg, sec_per_iter=sec_per_iter,
                           wall_s=sum(s['wall_s'] for s in segments) if segments else None,
                           cpu_s=sum(s['cpu_s'] for s in segments) if segments else None,
                           peak_rss_mb=max(peaks) if peaks else None)
    record['status'] = 'ok'
    finished = os.path.join(outdir, 'record.json')
    if segments or not os.path.isfile(finished):
        with open(finished, 'w') as file:
            json.dump(record, file, indent=1)
    return json.load(open(finished))


# -- the substitute detector and the metrics -----------------------------------------------------

def dataset_images(path):
    dataset = ImageFolderDataset(path)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))
    return images[:, :1].repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


@torch.no_grad()
def source_samples(source, count, device='cpu'):
    """uint8 samples of the source generator (fixed seeds, constant noise)."""
    loaded = stylegan2_ada.load(source)
    G = (loaded.get('G_ema') or loaded['G']).to(device).eval()
    z = seed_latents(range(SOURCE_SAMPLE_SEED, SOURCE_SAMPLE_SEED + count), G.z_dim).to(device)
    c = torch.zeros([count, G.c_dim], device=device)
    images = torch.cat([quantize(G(zz, cc, noise_mode='const')).cpu()
                        for zz, cc in zip(z.split(64), c.split(64))])
    return images[:, :1].repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def build_detector(opts, log):
    """The substitute detector for these domains (cached), and its description. It learns from the
    source domain's real images (--source-data; without them, as many source samples) and the
    target domain's (the shots and the held-out images), without labels."""
    target, heldout = dataset_images(opts['data']), dataset_images(opts['heldout'])
    if opts['source_data']:
        source_domain, kind = dataset_images(opts['source_data']), 'source_images'
    else:
        source_domain, kind = source_samples(opts['source'], len(target) + len(heldout)), 'source_samples'
    images = torch.cat([target, heldout, source_domain])
    settings = dict(steps=opts['detector_steps'])
    encoder, info = substitute_detector.load_or_train(images, seed=opts['detector_seed'],
                                                      use_cache=opts['cache'], log=log, **settings)
    info.update(description=substitute_detector.DESCRIPTION, limits=substitute_detector.LIMITS,
                training_images={'target': len(target), 'heldout': len(heldout), kind: len(source_domain)})
    return encoder, info


def build_content_encoder(opts, paired, log):
    """The correspondence encoder (cached): the substitute detector's recipe plus cross-style pairs
    of the even-numbered paired items as positives, so it sees the same emoji through both styles;
    its retrieval is measured on the odd-numbered items it never paired. (encoder, info)."""
    sources, targets = paired
    count = len(sources)
    images = torch.cat([sources, targets])
    trained = torch.arange(0, count, 2)
    pairs = torch.stack([trained, trained + count], 1)
    encoder, info = substitute_detector.load_or_train(images, seed=opts['detector_seed'], pairs=pairs,
                                                      use_cache=opts['cache'], log=log,
                                                      steps=opts['detector_steps'])
    unseen = torch.arange(1, count, 2)
    info = {k: v for k, v in info.items() if k != 'cached'}
    info.update(paired_items=count, pairs_trained=len(trained),
                retrieval_unseen=corr.retrieval(encoder, sources[unseen], targets[unseen]))
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


def snapshot_scorer(opts, detector, correspondence, data_of_seed=None):
    """evaluate(snapshot, seed) -> every number of one evaluation point."""
    def evaluate(snapshot, seed, train_data=None):
        start = time.time()
        records = gda_metrics.evaluate_network(snapshot, METRICS, data=opts['heldout'],
                                               train_data=train_data or opts['data'],
                                               **metric_options(opts, detector, seed))
        values = results_of(records)
        if correspondence is not None:
            values['correspondence'] = correspondence.of_snapshot(snapshot)
        values['eval_s'] = time.time() - start
        return values
    return evaluate


def reference_rows(opts, detector, correspondence, log):
    """What the detector says about fixed sets: the source unadapted, the shots themselves, and
    two halves of the held-out set (the noise floor of this reference set)."""
    extract = lambda images: detector(images.float(), return_features=True).double().numpy()  # noqa: E731
    with torch.no_grad():
        held = extract(dataset_images(opts['heldout']))
        shots = extract(dataset_images(opts['data']))
    rows = dict(
        shots=dict(kid=kernel_inception_distance(shots, held), fid=fid_from_features(shots, held)),
        heldout_halves=dict(kid=kernel_inception_distance(held[0::2], held[1::2]),
                            fid=fid_from_features(held[0::2], held[1::2])))
    log('Scoring the source generator (not adapted) ...')
    records = gda_metrics.evaluate_network(opts['source'], ['kid', 'fid', 'intra_lpips'],
                                           data=opts['heldout'], train_data=opts['data'],
                                           **metric_options(opts, detector, 0))
    rows['source'] = dict(results_of(records), scs=1.0)
    if opts['source_data']:
        records = gda_metrics.evaluate_network(opts['source'], ['kid', 'fid'], data=opts['source_data'],
                                               **metric_options(opts, detector, 0))
        rows['source_vs_source_domain'] = results_of(records)
    if correspondence is not None:
        rows['source'].update(correspondence.of_source(opts['source']))
    return rows


# -- summary -------------------------------------------------------------------------------------

def at_iteration(record, iteration):
    """The evaluation entry of a run at `iteration` (None if it has none there)."""
    return next((entry for entry in record.get('evals', []) if entry['iteration'] == iteration), None)


def summarise(records, planned, at):
    """One row per configuration: mean (and std over seeds) of every number at iteration `at`, and
    its curve (mean over seeds at every evaluation point)."""
    rows = []
    for config, status, notes in planned:
        mine = [r for r in records if r['config'] == config.name]
        row = dict(config=config.name, plugins=list(config.plugins), shots=config.shots, notes=notes)
        if status != 'run':
            row['status'] = status
            rows.append(row)
            continue
        failed = [r['status'] for r in mine if r['status'] != 'ok']
        row['status'] = (failed[0] if failed else 'ok' if mine
                         else 'not finished: the benchmark stopped before this run')
        good = [r for r in mine if r['status'] == 'ok']
        entries = [e for e in (at_iteration(r, at) for r in good) if e is not None]
        for key in COLUMNS:
            values = [e[key] for e in entries if e.get(key) is not None]
            if values:
                row[key] = float(np.mean(values))
                row[key + '_std'] = float(np.std(values)) if len(values) > 1 else None
        row['seeds'] = len(entries)
        for key in ('sec_per_kimg', 'peak_rss_mb', 'wall_s', 'cpu_s'):
            values = [r['train'][key] for r in good if r.get('train', {}).get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        points = sorted({e['iteration'] for r in good for e in r.get('evals', [])})
        row['curves'] = {key: [[point, float(np.mean(values)) if values else None]
                               for point in points
                               for values in [[e[key] for r in good for e in [at_iteration(r, point)]
                                               if e is not None and e.get(key) is not None]]]
                         for key in COLUMNS}
        rows.append(row)
    return rows


CURVE_TITLES = dict(
    kid=('KID vs the held-out target images (lower: closer to the target domain)', 'KID'),
    fid=('FID vs the held-out target images (lower is better)', 'FID'),
    intra_lpips=('Intra-cluster LPIPS (higher: more diverse, less copying of the shots)', 'intra-LPIPS'),
    scs=("SCS: structure kept from the source for the same z (higher: more kept)", 'SCS'),
    correspondence=('Correspondence: same emoji as the source for the same z (higher: more kept)', 'share'))


def write_curves(out, result):
    """adaptation-<metric>.png: every configuration's mean over seeds along training, starting
    from the unadapted source at iteration 0. Returns {metric: file name}."""
    written = {}
    source = result['reference']['source']
    seeds = ', '.join(map(str, result['protocol']['seeds']))
    for key, (title, label) in CURVE_TITLES.items():
        series = {}
        for row in result['rows']:
            points = (row.get('curves') or {}).get(key) or []
            if any(value is not None for _, value in points):
                series[row['config']] = [(0, source.get(key))] + [tuple(point) for point in points]
        if not series:
            continue
        name = f'adaptation-{key}.png'
        curves.plot(series, os.path.join(out, name), title, label,
                    note=f'mean over seeds {seeds}; iteration 0 = the source, not adapted')
        written[key] = name
    return written


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
             f'evaluated every {p["eval_every"]}; table at iteration {p["table_at"]}; '
             f'seeds {", ".join(map(str, p["seeds"]))}, {p["threads"]} thread(s) per run; metrics on '
             f'{p["num_gen"]} generated images ({p["num_pairs"]} pairs for SCS and correspondence)  ',
             f'Machine: {p["machine"]}; total time {result["runtime_s"] / 60:.1f} min '
             f'(load average {p["load_start"]} at the start, {p["load_end"]} at the end)', '',
             '| method | KID ↓ | FID ↓ | intra-LPIPS ↑ | SCS ↑ | corresp. ↑ | sec/kimg | peak RSS (MB) | status / notes |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    src = result['reference']['source']
    lines.append(f'| *source, not adapted* | {fmt(src["kid"])} | {fmt(src["fid"], 2)} | '
                 f'{fmt(src["intra_lpips"])} | 1 | {fmt(src.get("correspondence"))} | - | - | reference row |')
    for row in result['rows']:
        cells = [fmt(row.get(key), 2 if key == 'fid' else 3, row.get(key + '_std')) for key in
                 ('kid', 'fid', 'intra_lpips', 'scs', 'correspondence')]
        lines.append(f'| {row["config"]} | ' + ' | '.join(cells) + f' | {fmt(row.get("sec_per_kimg"), 0)} | '
                     f'{fmt(row.get("peak_rss_mb"), 0)} | {row_notes(row)} |')
    ref = result['reference']
    if ref.get('source_vs_source_domain'):
        own = ref['source_vs_source_domain']
        lines += ['', f'The source generator against its own domain (`{p["source_data"]}`), same detector: '
                  f'KID {fmt(own["kid"])}, FID {fmt(own["fid"], 2)}'
                  + (f'; its samples draw {src["distinct_emoji"]} distinct emoji (nearest source image, '
                     f'{p["num_pairs"]} samples)' if src.get('distinct_emoji') is not None else '') + '.']
    lines += ['', f'Reference sets, same detector: the {p["target_images"]} shots themselves vs the held-out images '
              f'KID {fmt(ref["shots"]["kid"])} (FID {fmt(ref["shots"]["fid"], 2)}); one half '
              f'of the held-out images vs the other KID {fmt(ref["heldout_halves"]["kid"])} '
              f'(FID {fmt(ref["heldout_halves"]["fid"], 2)}): differences between methods smaller '
              'than that are noise.', '']
    if result.get('curves'):
        lines += ['Curves (mean over seeds, iteration 0 = the source): '
                  + ', '.join(f'[{key}]({name})' for key, name in result['curves'].items()) + '.', '']
    retrieval = d.get('retrieval')
    lines += ['**Substitute detector.** ' + d['description'] + f' ({d["settings"]["steps"]} steps, seed '
              f'{d["seed"]}; final NT-Xent {d["final_loss"]:.3f}, augmented-view retrieval top-1 '
              f'{d["retrieval_top1"]:.2f} over {d["images"]} images'
              + (f'; cross-style retrieval over {retrieval["pairs"]} paired emoji: a target image\'s own '
                 f'source image is the nearest for {retrieval["target_to_source_top1"]:.1%}, among the '
                 f'{retrieval["k"]} nearest for {retrieval["target_to_source_topk"]:.1%} (source -> target '
                 f'{retrieval["source_to_target_top1"]:.1%} / {retrieval["source_to_target_topk"]:.1%})'
                 if retrieval else '') + '). Limits:', '']
    lines += [f'- {limit}' for limit in d['limits']]
    content = result.get('content_encoder')
    if content:
        unseen = content['retrieval_unseen']
        lines += ['', f'**Correspondence encoder.** The same recipe on the {content["paired_items"]} paired '
                  f'items, plus the two styles of {content["pairs_trained"]} of them (the even-numbered) as '
                  f'positives ({content["settings"]["steps"]} steps). On the {unseen["pairs"]} items it '
                  f'never paired, a target image\'s own source image is the nearest for '
                  f'{unseen["target_to_source_top1"]:.1%} and among the {unseen["k"]} nearest for '
                  f'{unseen["target_to_source_topk"]:.1%} (source -> target {unseen["source_to_target_top1"]:.1%} '
                  f'/ {unseen["source_to_target_topk"]:.1%}): that bounds how well correspondence can be '
                  'read, for every row alike.']
    inversion = result.get('rssa_inversion')
    if inversion:
        lines += ['', 'rssa\'s target codes: ' + '; '.join(
            f'`{record["command"]}`, {record["status"]}, {record.get("wall_s", 0):.0f} s'
            for record in inversion.values()) + ' (once for all rssa rows, not in their times).']
    lines += ['', '**Columns.** KID, FID: substitute embedding of generated vs held-out images '
              '(gda_core.metrics kid/fid; KID as computed, not scaled by 10^3, in the embedding\'s '
              'own units). ± is the standard deviation over seeds. intra-LPIPS: CDC\'s intra-cluster protocol with the '
              'substitute\'s unit-weight LPIPS, clusters = the shots. SCS: RSSA\'s score with '
              'Sobel edges, source vs adapted for the same z. Correspondence: share of z for which '
              'the adapted image is nearest to the target-style version of the emoji the source '
              'drew (benchmarks/correspondence.py); for the source row, how often a source sample is '
              'already nearest to its own emoji\'s target version. sec/kimg: the training loop\'s '
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


def budget(quick, configs, seeds, iters, eval_every):
    """(configs, seeds, iters, eval_every): what was given, else --quick's or the full table's."""
    return (configs or (QUICK_CONFIGS if quick else 'all'), seeds or ('0' if quick else DEFAULT_SEEDS),
            iters or (QUICK_ITERS if quick else DEFAULT_ITERS),
            eval_every or (QUICK_EVAL_EVERY if quick else DEFAULT_EVAL_EVERY))


def shot_folder(data, shots, workdir):
    """A folder with the first `shots` images of `data` (in the dataset's order): the few-shot
    training set of rows that use fewer images than given."""
    dataset = ImageFolderDataset(data)
    if shots >= dataset.image_count:
        return data
    folder = os.path.join(workdir, f'target-{shots}shot')
    os.makedirs(folder, exist_ok=True)
    for index in range(shots):
        pixels = dataset[index][0].transpose(1, 2, 0)
        image = PIL.Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        image.save(os.path.join(folder, f'{index:04d}.png'))
    return folder


def paired_sets(data, heldout, source_data, pairs):
    """(source images, target images) of the same items for correspondence, or None: --pairs when
    given, else the shipped Noto/Twemoji pairs when the protocol is the shipped one."""
    if pairs:
        source_path, target_path = pairs.split(',', 1)
        return corr.dataset_pairs(source_path, target_path)[:2]
    shipped = (os.path.abspath(data) == os.path.abspath(demo_data.TARGET_DIR)
               and os.path.abspath(heldout) == os.path.abspath(demo_data.HELDOUT_ZIP)
               and os.path.abspath(source_data or demo_data.SOURCE_ZIP) == os.path.abspath(demo_data.SOURCE_ZIP))
    return corr.shipped_pairs()[:2] if shipped else None


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--source', help='32 px source network [default: the bundled demo source]', metavar='PKL')
@click.option('--target', '--data', 'data', default=demo_data.TARGET_DIR, show_default='the 10 bundled Twemoji shots', help='Few-shot target images (folder or zip)', metavar='PATH')
@click.option('--heldout', default=demo_data.HELDOUT_ZIP, show_default='the 3,776 held-out Twemoji emoji', help='Reference images of the target domain for the metrics (folder or zip)', metavar='PATH')
@click.option('--source-data', help='Real images of the source domain for the detector [default: the bundled Noto set with the bundled target; else samples of the source]', metavar='PATH')
@click.option('--pairs', help='SRC,TGT: the same items in both domains, same order, for correspondence [default: the bundled Noto/Twemoji pairs]', metavar='SRC,TGT')
@click.option('--shots', type=click.IntRange(min=1), help='Train on the first N target images [default: all]')
@click.option('--configs', help=f'Comma list of {", ".join(CONFIG_NAMES)} or any plugin+plugin combination [default: all; --quick: {QUICK_CONFIGS}]')
@click.option('--quick', is_flag=True, help=f'The headline methods ({QUICK_CONFIGS}), one seed: a first look in about half an hour on 2 cores')
@click.option('--iters', type=click.IntRange(min=1), help=f'Training iterations per run (batch {BATCH}) [default: {DEFAULT_ITERS}; --quick: {QUICK_ITERS}]')
@click.option('--eval-every', type=click.IntRange(min=1), help=f'Iterations between evaluation points (the curves) [default: {DEFAULT_EVAL_EVERY}; --quick: {QUICK_EVAL_EVERY}]')
@click.option('--table-at', type=click.IntRange(min=1), help='Iteration the table reports [default: --iters]')
@click.option('--seeds', help=f'Comma list of seeds (training and metrics); rows average over them [default: {DEFAULT_SEEDS}; --quick: 0]')
@click.option('--num-gen', type=click.IntRange(min=2), default=1000, show_default=True, help='Generated images for KID, FID and intra-LPIPS')
@click.option('--num-pairs', type=click.IntRange(min=1), default=500, show_default=True, help='Source/adapted pairs for SCS and correspondence')
@click.option('--detector-steps', type=click.IntRange(min=1), default=substitute_detector.DEFAULTS['steps'], show_default=True, help='Training steps of the substitute detector')
@click.option('--detector-seed', type=int, default=0, show_default=True, help='Seed of the substitute detector')
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True, help='CPU threads per training run (more threads on a busy machine are much slower)')
@click.option('--jobs', type=click.IntRange(min=1), default=1, show_default=True, help='Training runs at once (subprocesses)')
@click.option('--device', help='Torch device of the training runs [default: gda train\'s]', metavar='DEV')
@click.option('--workdir', default=os.path.join(ROOT, 'build', 'benchmark-adaptation'), show_default='build/benchmark-adaptation', help='Where the runs go (finished runs there are reused)', metavar='DIR')
@click.option('--out', default=os.path.join(ROOT, 'benchmarks', 'results'), show_default='benchmarks/results', help='Where adaptation.json, .md and the curves go', metavar='DIR')
@click.option('--in-process', is_flag=True, help='Run gda train inside this process (no per-run memory figure)')
@click.option('--smoke', is_flag=True, help='Shorten plugins\' setup work (rssa inversion, ewc Fisher): CI only')
@click.option('--no-cache', 'cache', is_flag=True, flag_value=False, default=True, help='Retrain the detector and recompute reference features')
def main(source, data, heldout, source_data, pairs, shots, configs, quick, iters, eval_every, table_at,
         seeds, num_gen, num_pairs, detector_steps, detector_seed, threads, jobs, device, workdir, out,
         in_process, smoke, cache):
    """Fine-tune a source with every method plugin and score the results along training (see the
    module docstring)."""
    started = time.time()
    load_start = load_average()
    configs, seeds, iters, eval_every = budget(quick, configs, seeds, iters, eval_every)
    seeds = parse_seeds(seeds)
    source = source or default_source()
    for path, flag in ((source, '--source'), (data, '--target'), (heldout, '--heldout'),
                       (source_data, '--source-data')):
        if path is not None and not os.path.exists(path):
            raise click.BadParameter(f'{path} does not exist', param_hint=flag)
    if pairs is not None and (pairs.count(',') != 1 or not all(os.path.exists(p) for p in pairs.split(','))):
        raise click.BadParameter(f'{pairs!r}: give two existing datasets as SRC,TGT', param_hint='--pairs')
    if jobs > 1 and in_process:
        raise click.UsageError('--jobs runs separate processes; drop --in-process or --jobs')
    table_at = table_at or iters
    if table_at not in eval_points(iters, eval_every):
        raise click.BadParameter(f'{table_at} is not an evaluation point (every {eval_every} up to '
                                 f'{iters})', param_hint='--table-at')
    try:
        chosen = parse_configs(configs)
    except UserError as error:
        raise click.BadParameter(str(error), param_hint='--configs') from None
    torch.set_num_threads(threads)
    os.makedirs(workdir, exist_ok=True)
    given_source = source
    source = os.path.join(workdir, 'source.pkl')   # a copy: a training run may rotate the original
    if not os.path.isfile(source) or sha256(source) != sha256(given_source):
        shutil.copyfile(given_source, source)
    if source_data is None and os.path.abspath(data) == os.path.abspath(demo_data.TARGET_DIR):
        source_data = demo_data.SOURCE_ZIP
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    data_of_shots = {}

    def data_of(config):
        count = config.shots or shots
        if count is None:
            return data
        if count not in data_of_shots:
            data_of_shots[count] = shot_folder(data, count, workdir)
        return data_of_shots[count]

    opts = dict(source=source, source_sha256=sha256(source), data=data, heldout=heldout,
                source_data=source_data, iters=iters, eval_every=eval_every, num_gen=num_gen,
                num_pairs=num_pairs, detector_steps=detector_steps, detector_seed=detector_seed,
                threads=threads, device=device, workdir=workdir, in_process=in_process, smoke=smoke,
                cache=cache, data_of=data_of, rssa_codes={})
    manager = default_manager()
    planned = plan(chosen, set(manager.plugins), {name: b.error for name, b in manager.broken.items()},
                   detector_available)
    for config, status, _ in planned:
        if status != 'run':
            log(f'{config.name}: {status}')

    try:
        detector, detector_info = build_detector(opts, log)
        opts['detector_key'] = detector_info['key']
        paired = paired_sets(data, heldout, source_data, pairs)
        scorer, content_info = None, None
        if paired is not None:
            detector_info['retrieval'] = corr.retrieval(detector, *paired)
            content, content_info = build_content_encoder(opts, paired, log)
            scorer = corr.Correspondence(content, *paired, count=num_pairs)
        reference = reference_rows(opts, detector, scorer, log)
    except (UserError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    evaluate = snapshot_scorer(opts, detector, scorer)

    jobs_list = [(config, seed) for config, status, _ in planned if status == 'run' for seed in seeds]
    inversion = {}
    for target_data in sorted({data_of(config) for config, _ in jobs_list if 'rssa' in config.plugins}):
        codes, inversion[target_data] = invert_targets(opts, target_data, log)
        if codes is None:
            log(f'rssa: the inversion failed ({inversion[target_data]["status"]}); the rssa rows invert by themselves')
        else:
            opts['rssa_codes'][target_data] = codes
    records = []
    command = command_line(click.get_current_context())

    def save():
        """adaptation.json, .md and the curves from the runs so far (written after every run, so
        an interrupted benchmark keeps what it finished); the result."""
        result = dict(
            command=command, date=datetime.datetime.now().isoformat(timespec='seconds'),
            protocol=dict(source=given_source, source_sha256=opts['source_sha256'], data=data,
                          heldout=heldout, source_data=source_data, pairs=pairs, shots=shots,
                          target_images=len(ImageFolderDataset(data)),
                          heldout_images=len(ImageFolderDataset(heldout)), iters=iters,
                          eval_every=eval_every, table_at=table_at, batch=BATCH,
                          seeds=seeds, threads=threads, jobs=jobs, in_process=in_process, smoke=smoke,
                          num_gen=num_gen, num_pairs=num_pairs, metrics=COLUMNS, machine=machine(),
                          load_start=load_start, load_end=load_average()),
            detector={k: v for k, v in detector_info.items() if k != 'cached'},
            content_encoder=content_info,
            reference=reference, rows=summarise(records, planned, table_at), runs=records,
            rssa_inversion=inversion or None, runtime_s=time.time() - started)
        result['curves'] = write_curves(out, result) if os.path.isdir(out) or os.makedirs(out) is None else {}
        write_results(out, 'adaptation', result, markdown(result))
        return result

    def scored(snapshot, seed, config):
        return evaluate(snapshot, seed, train_data=data_of(config))

    def finish(record):
        train = record.get('train') or {}
        last = (record.get('evals') or [{}])[-1]
        scores = ', '.join(f'{k} {v:.4f}' for k, v in last.items() if k in COLUMNS)
        log(f'{record["config"]} seed {record["seed"]}: {record["status"]}'
            + (f'; {train["sec_per_kimg"]:.0f} sec/kimg' if train.get('sec_per_kimg') else '')
            + (f'; at {last["iteration"]}: {scores}' if scores else ''))
        records.append(record)
        save()

    def run(config, seed):
        return train_one(config, seed, opts, lambda snapshot, s: scored(snapshot, s, config))

    if jobs > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(run, config, seed) for config, seed in jobs_list]
            for future in futures:
                finish(future.result())
    else:
        for config, seed in jobs_list:
            log(f'Training {config.name} (seed {seed}, {iters} iterations, scored every {eval_every}) ...')
            finish(run(config, seed))

    result = save()
    click.echo(markdown(result))
    failed = [row['config'] for row in result['rows'] if row['status'] != 'ok' and not
              row['status'].startswith(('skipped', 'not run'))]
    if failed:
        raise click.ClickException(f'these configurations failed: {", ".join(failed)} (see their '
                                   f'train.log under {os.path.join(workdir, "runs")})')


if __name__ == '__main__':
    main()
