"""Ticks: the stats.jsonl line and log line of every --tick kimg, the plugins' on_tick, the
divergence check, and a progress line on a terminal between ticks.

Timings follow NVIDIA's: sec/tick and sec/kimg cover the iterations of the tick, `maintenance`
the previous tick's logging, images and snapshot; gpumem is each tick's own peak.
"""

import json
import math
import os
import sys
import time

import psutil
import torch

from .extensions import owner_of


class TickClock:
    """Where the current tick started (time, images, iterations) and what the last one cost."""

    def __init__(self, cur_nimg, iteration):
        self.start_time = time.time()
        self.tick_start_time = self.start_time
        self.tick_start_nimg, self.tick_start_iter = cur_nimg, iteration
        self.maintenance = 0.0
        self._end_time = None

    def due(self, cur_nimg, tick_kimg):
        return cur_nimg >= self.tick_start_nimg + tick_kimg * 1000

    def end(self, cur_nimg, iteration):
        """The tick's timing entries (stats.jsonl's time .. maintenance)."""
        self._end_time = time.time()
        sec = self._end_time - self.tick_start_time
        return dict(time=self._end_time - self.start_time, sec_per_tick=sec,
                    sec_per_kimg=sec / max((cur_nimg - self.tick_start_nimg) / 1000, 1e-8),
                    sec_per_iter=sec / max(iteration - self.tick_start_iter, 1),
                    maintenance=self.maintenance)

    def restart(self, cur_nimg, iteration):
        """The next tick starts now; what happened since end() was maintenance."""
        self.tick_start_nimg, self.tick_start_iter = cur_nimg, iteration
        self.tick_start_time = time.time()
        self.maintenance = self.tick_start_time - self._end_time


def memory_usage(device):
    """This process's RSS and the device's peak since the last call, in GiB."""
    usage = dict(cpumem_gb=psutil.Process(os.getpid()).memory_info().rss / 2 ** 30,
                 gpumem_gb=(torch.cuda.max_memory_allocated(device) / 2 ** 30
                            if device.type == 'cuda' else 0.0))
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    return usage


def _non_finite_weights(networks):
    """The first of `networks` ({name: module}) holding a NaN or inf weight, else None (one
    sync)."""
    flags = torch.stack([torch.stack([p.isfinite().all() for p in module.parameters()]).all()
                         for module in networks.values()]).tolist()
    return next((name for name, finite in zip(networks, flags) if not finite), None)


def divergence(loop, losses):
    """The one-line message of a tick whose losses or weights are no longer finite, or None.
    Checked once per tick: the statistics are on the host by then, the weights cost one sync."""
    bad = sorted(name for name, value in losses.items() if not math.isfinite(value))
    network = _non_finite_weights(dict(G=loop.G, D=loop.D, G_ema=loop.G_ema))
    if not bad and network is None:
        return None
    first = loop.stats.first_non_finite
    if bad:
        name = min(bad, key=lambda key: (first.get(key, loop.iteration), key))
        what = f'the loss {name} became {losses[name]}'
        at = first.get(name, loop.iteration)
    else:
        what, at = f'the weights of {network} became non-finite', loop.iteration
    kept = (f'{os.path.basename(loop.last_snapshot)} (iteration {loop.snapshot_iteration}) '
            f'stays the newest valid snapshot' if loop.last_snapshot
            else 'no snapshot had been written yet')
    return (f'training diverged at iteration {at}: {what}; nothing non-finite was saved and '
            f'{kept}; try a lower --lr (now {loop.opts.lr:g}) or a higher --gamma (now '
            f'{loop.opts.gamma:g})')


def tick_callbacks(callbacks, info):
    """Call each on_tick with TickInfo `info`; what each returns, keyed <owner>/<key>."""
    logged = {}
    for index, fn in enumerate(callbacks):
        owner = owner_of(fn, 'on_tick', index)
        for key, value in (fn(info) or {}).items():
            logged[f'{owner}/{key}'] = float(value)
    return logged


def record_tick(run_dir, entry, log):
    """The tick's log line and its stats.jsonl line (rank 0)."""
    log(format_tick(entry))
    with open(os.path.join(run_dir, 'stats.jsonl'), 'a') as f:
        f.write(json.dumps(entry) + '\n')   # non-finite as NaN: gda report marks it


def format_tick(entry):
    return (f"tick {entry['tick']:<5d} kimg {entry['kimg']:<8.3f} iter {entry['iteration']:<7d} "
            f"time {_format_time(entry['time']):<12s} sec/tick {entry['sec_per_tick']:<7.1f} "
            f"sec/kimg {entry['sec_per_kimg']:<7.2f} maintenance {entry['maintenance']:<6.1f} "
            f"cpumem {entry['cpumem_gb']:<6.2f} gpumem {entry['gpumem_gb']:<6.2f} "
            f"augment {entry['augment']:.3f}")


def _format_time(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    if seconds < 3600:
        return f'{seconds // 60}m {seconds % 60:02d}s'
    return f'{seconds // 3600}h {(seconds // 60) % 60:02d}m'


class Progress:
    """A one-line progress indicator on an interactive terminal (nothing otherwise)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.last = 0.0

    def update(self, loop):
        if not self.enabled or time.time() - self.last < 0.5:
            return
        self.last = time.time()
        opts = loop.opts
        goal = []
        if opts.kimg is not None:
            goal.append(f"kimg {loop.cur_nimg / 1000:.3f}/{opts.kimg:g}")
        if opts.iters is not None:
            goal.append(f"iter {loop.iteration}/{opts.iters}")
        sys.stderr.write('\r' + '  '.join(goal) + ' ' * 8)
        sys.stderr.flush()

    def clear(self):
        if self.enabled:
            sys.stderr.write('\r' + ' ' * 60 + '\r')
            sys.stderr.flush()


__all__ = ['TickClock', 'Progress', 'divergence', 'format_tick', 'memory_usage', 'record_tick',
           'tick_callbacks']
