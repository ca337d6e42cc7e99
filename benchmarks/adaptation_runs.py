"""The adaptation benchmark's training runs: one `gda train` per configuration and seed, in
segments that end at the evaluation points (`gda train --resume` between them, which is exact), so
a run can be scored along training, a stopped benchmark resumes, and a finished run is reused.
Also used by gpu_paper256.py."""

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback

import torch

BATCH = 4                       # --cfg fewshot's batch (CDC); every method trains at it

# --smoke: options that shorten setup work only (Fisher information; rssa's inversion below).
SMOKE_OPTIONS = {'ewc': ['--ewc-samples', '4'],
                 'adam': ['--adam-probe-iters', '2', '--adam-fisher-samples', '4'],
                 'rick': ['--rick-warmup', '0', '--rick-fisher-freq', '1', '--rick-fisher-batches', '1']}
SMOKE_INVERT_STEPS = 2

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
    return args + list(config.options)


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
    """(sec/kimg, sec/iter) of the training loop from stats.jsonl, leaving out each process's first
    tick (warm-up: first calls, regularisation set-up): a run trained in segments restarts its
    clock at every `--resume`, where `time` falls."""
    entries = [json.loads(line) for line in open(stats_path) if line.strip()]
    if not entries:
        return None, None
    seconds = kimg = iterations = 0.0
    for previous, entry in zip(entries, entries[1:]):
        if entry['time'] > previous['time']:   # same process
            seconds += entry['time'] - previous['time']
            kimg += entry['kimg'] - previous['kimg']
            iterations += entry['iteration'] - previous['iteration']
    if kimg > 0:
        return seconds / kimg, seconds / iterations
    last = entries[-1]
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
    protocol = dict(config=config.name, plugins=list(config.plugins), seed=seed,
                    iters=opts['iters'], eval_every=opts['eval_every'], batch=BATCH,
                    source_sha256=opts['source_sha256'], data=opts['data_of'](config),
                    smoke=opts['smoke'], device=opts['device'], num_gen=opts['num_gen'],
                    num_pairs=opts['num_pairs'], detector=opts['detector_key'])
    if config.options:   # only then, so that runs recorded before options existed stay reusable
        protocol['options'] = list(config.options)
    return protocol


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
    record = json.load(open(finished))
    record['train'].update(sec_per_kimg=sec_per_kimg, sec_per_iter=sec_per_iter,   # from the whole run
                           peak_rss_mb=peak_memory_mb(stats_of(run_dir)))
    return record


def peak_memory_mb(stats):
    """The training process's own peak resident memory (its per-tick cpumem), in MB. (The child's
    ru_maxrss would count the benchmark process it was forked from.)"""
    values = [entry['cpumem_gb'] for entry in stats if entry.get('cpumem_gb') is not None]
    return max(values) * 1024 if values else None
