"""The training loop: NVIDIA's phases, EMA, ADA and ticks, with the injection points of extensions.py.

One iteration = one G step and one D step over the whole global batch (all processes, all
gradient-accumulation rounds); regularisation phases run every `G_reg_interval` /
`D_reg_interval` iterations. The loop knows nothing of plugins: the host hands it an `Extensions`.
"""

import copy
import dataclasses
import json
import os
import sys
import time

import numpy as np
import psutil
import torch

from .augment import AUGPIPE_SPECS, AdaController, AugmentPipe
from .extensions import Extensions, Iteration
from .image_grid import save_image_grid
from .loss import StyleGAN2Loss
from .training_stats import TickStats

SNAPSHOT_NAME = 'network-snapshot-{kimg:06d}.pkl'


@dataclasses.dataclass
class Distributed:
    """This process's place among the training processes (rank 0 writes files and logs)."""
    rank: int = 0
    world_size: int = 1

    def all_reduce_mean(self, tensor):
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
            tensor /= self.world_size

    def all_reduce_sum(self, tensor):
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)


@dataclasses.dataclass
class Phase:
    name: str
    network: str
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    params: list
    interval: int


class DataSampler:
    """An endless, reproducible walk over the dataset: epoch e is permutation(seed + e).

    The position is a single integer, so resuming restores exactly the same sequence; each
    process takes its slice of every global batch.
    """

    def __init__(self, size, seed, shuffle=True):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.position = 0
        self._epoch = None
        self._order = None

    def _index(self, position):
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = (torch.randperm(self.size, generator=generator) if self.shuffle
                           else torch.arange(self.size))
            self._epoch = epoch
        return int(self._order[offset])

    def next_batch(self, batch_size):
        indices = [self._index(self.position + i) for i in range(batch_size)]
        self.position += batch_size
        return indices


def load_batch(dataset, indices, device):
    images, labels = zip(*(dataset[i] for i in indices))
    images = torch.from_numpy(np.stack(images)).to(device).to(torch.float32) / 127.5 - 1
    labels = torch.from_numpy(np.stack(labels).astype(np.float32)).to(device)
    return images, labels


def _requires_grad(params, flag):
    for param in params:
        param.requires_grad_(flag)


def trainable_params(network_name, module, extensions):
    """Apply the freezing policies; returns the parameters that train (frozen ones stay frozen)."""
    trainable = []
    for name, param in module.named_parameters():
        if extensions.is_trainable(network_name, name, param):
            trainable.append(param)
        else:
            param.requires_grad_(False)
    return trainable


def parameter_report(name, module, trainable):
    """One line per top-level child: trainable / total parameter counts."""
    trainable_ids = {id(p) for p in trainable}
    lines = []
    for child_name, child in module.named_children():
        params = list(child.parameters())
        total = sum(p.numel() for p in params)
        train = sum(p.numel() for p in params if id(p) in trainable_ids)
        lines.append(f'  {name}.{child_name:<12s} {train:>11,d} / {total:>11,d} trainable')
    return lines


def make_optimizer(params, groups, lr, betas, reg_interval):
    """Adam with NVIDIA's lazy-regularisation correction of lr and betas."""
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1
    param_groups = [dict(params=params, lr=lr * ratio)]
    for group in groups:
        param_groups.append(dict(params=group.params, lr=lr * ratio * group.lr_multiplier))
    betas = tuple(beta ** ratio for beta in betas)
    return torch.optim.Adam(param_groups, lr=lr * ratio, betas=betas, eps=1e-8)


def ema_beta(opts, cur_nimg):
    ema_nimg = opts['ema_kimg'] * 1000
    if opts.get('ema_rampup') is not None:
        ema_nimg = min(ema_nimg, cur_nimg * opts['ema_rampup'])
    return 0.5 ** (opts['batch'] / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema, G, beta):
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def make_augment_pipe(opts, device):
    if opts['aug'] == 'noaug':
        return None
    pipe = AugmentPipe(**AUGPIPE_SPECS[opts['augpipe']]).train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(opts.get('p') or 0.0))
    return pipe


class TrainingLoop:
    """Holds everything a run needs; `run()` trains until --kimg / --iters is reached."""

    def __init__(self, run_dir, G, D, dataset, opts, G_ema=None, extensions=None, device='cpu',
                 dist=None, save_snapshot=None, log=print):
        self.run_dir = run_dir
        self.opts = opts
        self.device = torch.device(device)
        self.dist = dist or Distributed()
        self.ext = extensions or Extensions()
        self.dataset = dataset
        self.save_snapshot = save_snapshot
        self.log = log if self.dist.rank == 0 else (lambda *args, **kwargs: None)

        self.G = G.train().requires_grad_(False).to(self.device)
        self.D = D.train().requires_grad_(False).to(self.device)
        self.G_ema = (G_ema if G_ema is not None else copy.deepcopy(G)).eval().requires_grad_(False)
        self.G_ema.to(self.device)

        self.augment_pipe = make_augment_pipe(opts, self.device)
        self.ada = None
        if self.augment_pipe is not None and opts['aug'] == 'ada' and self.ext.augment_p is None:
            self.ada = AdaController(self.augment_pipe, target=opts['ada_target'],
                                     interval=opts.get('ada_interval', 4), kimg=opts['ada_kimg'])

        self.stats = TickStats(self.device)
        self.loss = StyleGAN2Loss(self.G, self.D, augment_pipe=self.augment_pipe,
                                  r1_gamma=opts['gamma'], style_mixing_prob=opts['style_mixing'],
                                  pl_weight=opts['pl_weight'], extensions=self.ext,
                                  stats=self.stats)
        self.loss.ada = self.ada
        self.phases = self._make_phases()

        self.sampler = DataSampler(len(dataset), seed=opts['seed'])
        self.z_generator = torch.Generator(device=self.device).manual_seed(opts['seed'])
        self.cur_nimg = 0
        self.iteration = 0
        self.tick = 0

    # -- setup ----------------------------------------------------------------------------------

    def _make_phases(self):
        opts = self.opts
        phases = []
        betas = (0.0, 0.99)
        for name, module, reg_interval in [('G', self.G, opts.get('G_reg_interval', 4)),
                                           ('D', self.D, opts.get('D_reg_interval', 16))]:
            params = trainable_params(name, module, self.ext)
            groups = [g for g in self.ext.param_groups if g.network == name]
            for line in parameter_report(name, module, params):
                self.log(line)
            for group in groups:
                count = sum(p.numel() for p in group.params)
                self.log(f'  {name} + {group.name:<12s} {count:>11,d} trainable (added)')
            all_params = params + [p for g in groups for p in g.params]
            optimizer = make_optimizer(params, groups, opts['lr'], betas, reg_interval)
            if reg_interval:
                phases.append(Phase(f'{name}main', name, module, optimizer, all_params, 1))
                phases.append(Phase(f'{name}reg', name, module, optimizer, all_params,
                                    reg_interval))
            else:
                phases.append(Phase(f'{name}both', name, module, optimizer, all_params, 1))
        return phases

    # -- one iteration --------------------------------------------------------------------------

    def _global_latents(self, it, phase):
        """z for the whole global batch from the run's z generator, then this process's slice."""
        opts, dist = self.opts, self.dist
        batch = opts['batch']
        z = self.ext.z(it, batch, phase, self.G.z_dim, self.device, generator=self.z_generator)
        label_idx = torch.randint(len(self.dataset), [batch], generator=self.z_generator,
                                  device=self.device).tolist()
        c = torch.from_numpy(np.stack([self.dataset.get_label(i) for i in label_idx])
                             .astype(np.float32)).to(self.device)
        per_rank = batch // dist.world_size
        start = dist.rank * per_rank
        return z[start:start + per_rank], c[start:start + per_rank]

    def step(self):
        opts, dist = self.opts, self.dist
        it = Iteration(index=self.iteration, cur_nimg=self.cur_nimg, batch_size=opts['batch'],
                       device=self.device)
        self.ext.begin(it)

        indices = self.sampler.next_batch(opts['batch'])
        per_rank = opts['batch'] // dist.world_size
        indices = indices[dist.rank * per_rank:(dist.rank + 1) * per_rank]
        real_img, real_c = load_batch(self.dataset, indices, self.device)
        rounds = max(per_rank // opts['batch_gpu'], 1)

        for phase in self.phases:
            if self.iteration % phase.interval != 0:
                continue
            gen_z, gen_c = self._global_latents(it, phase.name)
            phase.optimizer.zero_grad(set_to_none=True)
            _requires_grad(phase.params, True)
            for r_img, r_c, g_z, g_c in zip(real_img.chunk(rounds), real_c.chunk(rounds),
                                            gen_z.chunk(rounds), gen_c.chunk(rounds)):
                # Averaging over rounds makes accumulation equal to one pass over the batch.
                self.loss.accumulate_gradients(phase.name, r_img, r_c, g_z, g_c,
                                               gain=phase.interval / rounds, it=it)
            _requires_grad(phase.params, False)
            self._optimizer_step(phase)

        update_ema(self.G_ema, self.G, ema_beta(opts, self.cur_nimg))
        self.cur_nimg += opts['batch']
        self.iteration += 1

        if self.ext.augment_p is not None and self.augment_pipe is not None:
            self.augment_pipe.p.copy_(torch.as_tensor(float(self.ext.augment_p(it))))
        elif self.ada is not None:
            self.ada.step(opts['batch'], all_reduce=dist.all_reduce_sum)

    def _optimizer_step(self, phase):
        params = [p for p in phase.params if p.grad is not None]
        if self.dist.world_size > 1 and params:
            flat = torch.cat([p.grad.flatten() for p in params])
            self.dist.all_reduce_mean(flat)
            for param, grad in zip(params, flat.split([p.numel() for p in params])):
                param.grad.copy_(grad.reshape(param.shape))
        for param in params:
            torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
        phase.optimizer.step()

    # -- the run --------------------------------------------------------------------------------

    def done(self):
        opts = self.opts
        if opts.get('iters') is not None and self.iteration >= opts['iters']:
            return True
        return opts.get('kimg') is not None and self.cur_nimg >= opts['kimg'] * 1000

    def grid_latents(self, count=None):
        count = count or self.opts.get('grid_size', 16)
        generator = torch.Generator().manual_seed(self.opts['seed'] + 123)
        z = torch.randn([count, self.G.z_dim], generator=generator).to(self.device)
        idx = torch.randint(len(self.dataset), [count], generator=generator).tolist()
        c = torch.from_numpy(np.stack([self.dataset.get_label(i) for i in idx])
                             .astype(np.float32)).to(self.device)
        return z, c

    @torch.no_grad()
    def save_fakes(self, name):
        z, c = self.grid_latents()
        it = Iteration(index=self.iteration, cur_nimg=self.cur_nimg, batch_size=len(z),
                       device=self.device, mixing=False)
        ws = self.ext.transform_ws(self.G_ema.mapping(z, c), it)
        images = self.G_ema.synthesis(ws, noise_mode='const')
        save_image_grid(images, os.path.join(self.run_dir, name))

    def loop_state(self):
        """Everything exact resume needs, as tensors and plain values."""
        state = dict(cur_nimg=self.cur_nimg, iteration=self.iteration, tick=self.tick,
                     sampler_position=self.sampler.position,
                     pl_mean=self.loss.pl_mean.detach().cpu(),
                     optimizers={p.name: p.optimizer.state_dict() for p in self.phases
                                 if p.name.endswith(('main', 'both'))},
                     ada=self.ada.state_dict() if self.ada is not None else None,
                     augment_p=(self.augment_pipe.p.detach().cpu()
                                if self.augment_pipe is not None else None),
                     rng=dict(torch=torch.get_rng_state(), z=self.z_generator.get_state()))
        if torch.cuda.is_available():
            state['rng']['cuda'] = torch.cuda.get_rng_state_all()
        return state

    def load_loop_state(self, state):
        self.cur_nimg = int(state['cur_nimg'])
        self.iteration = int(state['iteration'])
        self.tick = int(state['tick'])
        self.sampler.position = int(state['sampler_position'])
        self.loss.pl_mean.copy_(torch.as_tensor(state['pl_mean']))
        for phase in self.phases:
            if phase.name in state['optimizers']:
                phase.optimizer.load_state_dict(state['optimizers'][phase.name])
        if state.get('ada') is not None and self.ada is not None:
            self.ada.load_state_dict(state['ada'])
        if state.get('augment_p') is not None and self.augment_pipe is not None:
            self.augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
        torch.set_rng_state(state['rng']['torch'])
        self.z_generator.set_state(state['rng']['z'])
        if 'cuda' in state['rng'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['rng']['cuda'])

    def snapshot(self):
        """Write network-snapshot-<kimg>.pkl atomically (through the host's save function)."""
        if self.save_snapshot is None or self.dist.rank != 0:
            return None
        path = os.path.join(self.run_dir, SNAPSHOT_NAME.format(kimg=self.cur_nimg // 1000))
        self.save_snapshot(path, self)
        return path

    def run(self, progress=None):
        opts = self.opts
        write = self.dist.rank == 0
        if write and self.iteration == 0:
            reals = load_batch(self.dataset, range(min(len(self.dataset), 16)), 'cpu')[0]
            save_image_grid(reals, os.path.join(self.run_dir, 'reals.png'))
            self.save_fakes('fakes_init.png')

        tick_kimg = opts.get('tick', 4)
        start_time = time.time()
        tick_start_time = start_time
        tick_start_nimg = self.cur_nimg
        tick_start_iter = self.iteration
        maintenance = 0.0
        progress = progress if progress is not None else _Progress(write and sys.stderr.isatty())
        while not self.done():
            self.step()
            progress.update(self, tick_start_nimg)
            if not self.done() and self.cur_nimg < tick_start_nimg + tick_kimg * 1000:
                continue

            # Tick: log, stats, images, snapshot.
            tick_end_time = time.time()
            maintenance_start = tick_end_time
            self.tick += 1
            losses = self.stats.collect(all_reduce=self.dist.all_reduce_sum)
            nimg = self.cur_nimg - tick_start_nimg
            sec = tick_end_time - tick_start_time
            entry = dict(tick=self.tick, kimg=self.cur_nimg / 1000, iteration=self.iteration,
                         time=tick_end_time - start_time, sec_per_tick=sec,
                         sec_per_kimg=sec / max(nimg / 1000, 1e-8),
                         sec_per_iter=sec / max(self.iteration - tick_start_iter, 1),
                         maintenance=maintenance,
                         cpumem_gb=psutil.Process(os.getpid()).memory_info().rss / 2 ** 30,
                         gpumem_gb=(torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                                    if self.device.type == 'cuda' else 0.0),
                         augment=(float(self.augment_pipe.p) if self.augment_pipe is not None
                                  else 0.0),
                         losses=losses)
            for fn in self.ext.on_tick:
                fn(entry)
            if write:
                progress.clear()
                self.log(format_tick(entry))
                with open(os.path.join(self.run_dir, 'stats.jsonl'), 'a') as f:
                    f.write(json.dumps(entry) + '\n')
                snap = opts.get('snap', 50)
                if snap and (self.tick % snap == 0 or self.done()):
                    self.save_fakes(f'fakes{self.cur_nimg // 1000:06d}.png')
                    self.snapshot()
            tick_start_nimg = self.cur_nimg
            tick_start_iter = self.iteration
            tick_start_time = time.time()
            maintenance = tick_start_time - maintenance_start
        progress.clear()


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


class _Progress:
    """A one-line progress indicator on an interactive terminal (nothing otherwise)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.last = 0.0

    def update(self, loop, tick_start_nimg):
        if not self.enabled or time.time() - self.last < 0.5:
            return
        self.last = time.time()
        opts = loop.opts
        goal = []
        if opts.get('kimg') is not None:
            goal.append(f"kimg {loop.cur_nimg / 1000:.3f}/{opts['kimg']:g}")
        if opts.get('iters') is not None:
            goal.append(f"iter {loop.iteration}/{opts['iters']}")
        sys.stderr.write('\r' + '  '.join(goal) + ' ' * 8)
        sys.stderr.flush()

    def clear(self):
        if self.enabled:
            sys.stderr.write('\r' + ' ' * 60 + '\r')
            sys.stderr.flush()
