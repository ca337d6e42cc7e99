"""The training loop: iterations in ticks, with sample grids, snapshots and exact resume.

Each job has its own module and this one puts them in order: training_networks.py applies the
extensions, training_step.py runs one iteration, training_grids.py draws reals.png and fakes*.png,
training_state.py saves and restores what resume needs, training_ticks.py logs ticks and checks
for divergence. The loop knows nothing of plugins: the host hands it an `Extensions`, and building
the loop checks and applies it (docs/hooks.md §5 steps 4-5) before any work.
"""

import sys

import torch

from .distributed import Distributed
from .errors import TrainingDiverged
from .extensions import Extensions, TickInfo
from .training_grids import SampleGrids
from .training_networks import TrainingNetworks
from .training_options import TrainingOptions
from .training_state import load_loop_state, loop_state, rank_state, write_snapshot
from .training_step import TrainingStep, configure_torch
from .training_ticks import (Progress, TickClock, divergence, memory_usage, record_tick,
                             tick_callbacks)


class TrainingLoop(TrainingStep):
    """Iterations in ticks until --kimg / --iters is reached (`run()`).

    The loop is its iteration (a TrainingStep: `step()`, the counters, optimisers and loss are its
    own) with ticks, images and snapshots around it. Construction sets torch up as NVIDIA's loop
    does, checks and applies the extensions (TrainingNetworks), then builds the iteration.
    `save_snapshot(path, loop)` is the host's writer of snapshot files; without it none is written.
    """

    def __init__(self, run_dir, G, D, dataset, opts, G_ema=None, extensions=None, device='cpu',
                 dist=None, save_snapshot=None, log=print):
        if not isinstance(opts, TrainingOptions):
            raise TypeError(f'opts must be TrainingOptions, got {type(opts).__name__}')
        device = torch.device(device)
        configure_torch(device, opts.cpu_bf16)
        dist = dist or Distributed()
        networks = TrainingNetworks(G, D, extensions or Extensions(), dataset, opts, device,
                                    G_ema=G_ema)
        super().__init__(networks, dataset, opts, device, dist)
        self.run_dir = run_dir
        self.save_snapshot = save_snapshot
        self.log = log if dist.rank == 0 else (lambda *args, **kwargs: None)
        for row in self.parameter_counts():
            self.log(f"  {row['module']:<24s} {row['trainable']:>11,d} trainable "
                     f"{row['frozen']:>11,d} frozen")
        self.grids = SampleGrids(run_dir, dataset, networks, opts, device)
        self.tick = 0
        self.last_snapshot = None   # the newest snapshot written (or resumed from): all finite
        self.snapshot_iteration = None
        self._rank_states = None    # every process's rank_state, gathered before a snapshot

    def parameter_counts(self):
        return self.networks.parameter_counts()

    def save_fakes(self, name):
        self.grids.save_fakes(name)

    # -- state (training_state.py) ----------------------------------------------------------------

    def gather_rank_states(self):
        """Collect every process's rank_state for the next loop_state(). A collective: every
        rank calls it, at the same moment (before a snapshot)."""
        self._rank_states = self.dist.all_gather_object(rank_state(self))

    def loop_state(self):
        """Everything exact resume needs, every process's RNG streams included once gathered."""
        return loop_state(self, self._rank_states or [rank_state(self)])

    def load_loop_state(self, state):
        load_loop_state(self, state)

    def sync_from_rank0(self):
        """Give every process rank 0's weights (networks, plugin modules, twins): a fresh run
        starts identical everywhere even if some construction or setup step drew randomly."""
        self.dist.broadcast_tensors(self.networks.tensors())

    # -- the run ----------------------------------------------------------------------------------

    def run(self, progress=None):
        write = self.dist.rank == 0
        if self.iteration == 0:
            self.nets.reset_twins()   # setup() may have changed modules since the twins' copy
            if write:
                self.grids.save_reals()
                self.save_fakes('fakes_init.png')
        clock = TickClock(self.cur_nimg, self.iteration)
        progress = progress if progress is not None else Progress(write and sys.stderr.isatty())
        while not self.done():
            self.stats.iteration = self.iteration + 1   # counted as the tick lines count
            self.step()
            progress.update(self)
            if self.done() or clock.due(self.cur_nimg, self.opts.tick):
                self._end_tick(clock, progress)
        progress.clear()

    def _end_tick(self, clock, progress):
        """Stats, on_tick and the divergence check; then, when due, images and a snapshot."""
        write = self.dist.rank == 0
        timing = clock.end(self.cur_nimg, self.iteration)
        self.tick += 1
        losses = self.stats.collect(all_reduce=self.dist.all_reduce_sum)
        entry = dict(tick=self.tick, kimg=self.cur_nimg / 1000, iteration=self.iteration,
                     **timing, **memory_usage(self.device),
                     augment=float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0,
                     losses=losses)
        diverged = divergence(self, losses)
        if diverged is None:
            entry.update(tick_callbacks(self.ext.on_tick, TickInfo(
                tick=self.tick, iteration=self.iteration, cur_nimg=self.cur_nimg,
                kimg=self.cur_nimg / 1000, stats=losses, run_dir=self.run_dir)))
        snap = self.opts.snap
        snapshot_due = not diverged and (self.done() or bool(snap) and self.tick % snap == 0)
        if snapshot_due:
            self.gather_rank_states()   # every rank, before rank 0 writes
        if write:
            progress.clear()
            record_tick(self.run_dir, entry, self.log)
        if diverged:
            progress.clear()
            raise TrainingDiverged(diverged)
        if write and snapshot_due:
            self._snapshot()
        self._rank_states = None
        clock.restart(self.cur_nimg, self.iteration)

    def _snapshot(self):
        """fakes<kimg>.png, then the snapshot. They must not move the training streams: a resumed
        run then matches an uninterrupted one whatever the snapshot cadence was."""
        devices = [self.device] if self.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            self.save_fakes(f'fakes{self.cur_nimg // 1000:06d}.png')
            write_snapshot(self)

