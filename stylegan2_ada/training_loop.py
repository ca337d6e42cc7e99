"""The training loop: NVIDIA's phases, EMA, ADA and ticks, with the injection points of extensions.py.

One iteration = one G step and one D step over the whole global batch (all processes, all
gradient-accumulation rounds); regularisation phases run every `G_reg_interval` /
`D_reg_interval` iterations. The loop knows nothing of plugins: the host hands it an `Extensions`,
and building the loop checks and applies it (docs/hooks.md §5 steps 4-5) before any work.
"""

import copy
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import psutil
import torch

from .augment import AUGPIPE_SPECS, AdaController, AugmentPipe
from .cpu_allocator import keep_freed_memory
from .distributed import Distributed, rng_state, seed_process, set_rng_state
from .errors import TrainingDiverged, UserError
from .extended import ExtendedNetworks
from .extensions import (ConflictError, Extensions, Iteration, LatentBatch, SnapshotInfo,
                         TickInfo, check_param_groups, owner_of, trainable_mask)
from .image_grid import LEGIBLE_WIDTH, save_image_grid
from .loss import StyleGAN2Loss
from .ops import conv2d_gradfix, grid_sample_gradfix
from .reparam import resolve_layer
from .training_options import TrainingOptions
from .training_stats import TickStats

SNAPSHOT_NAME = 'network-snapshot-{kimg:06d}.pkl'
CORE_BETAS = (0.0, 0.99)


@dataclasses.dataclass
class Phase:
    name: str
    network: str
    optimizer: torch.optim.Optimizer
    interval: int


class DataSampler:
    """An endless, reproducible walk over the dataset: epoch e is permutation(seed + e).

    The position is a single integer, so resuming restores exactly the same sequence. Every
    process walks the same global sequence and keeps every world_size-th item from its rank on, as
    NVIDIA's InfiniteSampler shards (see `rank_items`).
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


def rank_items(batch, rank, world_size):
    """This process's share of a global batch: items rank, rank + K, rank + 2K, ... (NVIDIA's
    InfiniteSampler). Strided, not contiguous: with the default --batch-gpu, K processes then see
    exactly the minibatch-std groups and path-length samples of one process
    (docs/resume-and-processes.md, "Equivalence rule")."""
    return batch[rank::world_size]


def load_batch(dataset, indices, device):
    images, labels = zip(*(dataset[i] for i in indices))
    images = torch.from_numpy(np.stack(images)).to(device).to(torch.float32) / 127.5 - 1
    labels = torch.from_numpy(np.stack(labels).astype(np.float32)).to(device)
    return images, labels


def raw_indices(dataset, indices):
    """Raw image indices of dataset items (--mirror doubles items, not images), as a LongTensor.

    Datasets that double their items say so with `raw_index(i)`; otherwise items are images.
    """
    raw = getattr(dataset, 'raw_index', None)
    return torch.as_tensor([raw(int(i)) if raw else int(i) for i in indices], dtype=torch.int64)


def iteration_rng(seed, index):
    """it.rng: a CPU generator seeded from (run seed, iteration), identical on every process."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def ema_beta(opts, cur_nimg):
    """G_ema's decay for one iteration of `opts.batch` images (TrainingOptions' half-life)."""
    ema_nimg = opts.ema_kimg * 1000
    if opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * opts.ema_rampup)
    return 0.5 ** (opts.batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema, live, beta):
    for p_ema, p in zip(ema.parameters(), live.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), live.buffers()):
        b_ema.copy_(b)


def make_augment_pipe(opts, device):
    if opts.aug == 'noaug':
        return None
    pipe = AugmentPipe(**AUGPIPE_SPECS[opts.augpipe]).train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(opts.p or 0.0))
    return pipe


def make_optimizer(core_params, groups, lr, reg_interval):
    """One Adam per side: the core group, then one group per plugin group.

    Lazy regularisation scales lr by r/(r+1) and betas by ** r/(r+1) (NVIDIA), for plugin groups
    too unless they opt out. Returns None when the side has nothing to train.
    """
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1

    def settings(params, lr, betas, lazy):
        r = ratio if lazy else 1
        return dict(params=params, lr=lr * r, betas=tuple(beta ** r for beta in betas))
    param_groups = [settings(core_params, lr, CORE_BETAS, True)] if core_params else []
    for group in groups:
        group_lr = (group.lr if group.lr is not None else lr) * group.lr_multiplier
        param_groups.append(settings(list(group.module.parameters()), group_lr,
                                     group.betas or CORE_BETAS, group.lazy_reg))
    return torch.optim.Adam(param_groups, eps=1e-8) if param_groups else None


class TrainingLoop:
    """Holds everything a run needs; `run()` trains until --kimg / --iters is reached.

    Construction checks the extensions for conflicts, then applies them: conditioning, trainable
    mask, parameter groups and optimisers, and `nets` (ExtendedNetworks: the extension modules,
    G_ema with their EMA twins, reparams, rendering).
    """

    def __init__(self, run_dir, G, D, dataset, opts, G_ema=None, extensions=None, device='cpu',
                 dist=None, save_snapshot=None, log=print):
        if not isinstance(opts, TrainingOptions):
            raise TypeError(f'opts must be TrainingOptions, got {type(opts).__name__}')
        self.run_dir = run_dir
        self.opts = opts
        self.device = torch.device(device)
        # As NVIDIA's training loop: R1 and path length skip the inner weight gradients, and
        # R1's double backward through ADA's grid_sample uses our own derivative (torch's CUDA
        # grid_sampler_2d_backward has none: "derivative ... is not implemented").
        conv2d_gradfix.enabled = True
        grid_sample_gradfix.enabled = True
        if self.device.type == 'cpu':
            keep_freed_memory()   # page faults on fresh tensors cost as much as small convs
        else:   # as NVIDIA's training loop: autotuned convolutions, full fp32 (no TF32) maths
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.dist = dist or Distributed()
        self.ext = ext = extensions or Extensions()
        self.dataset = dataset
        self.save_snapshot = save_snapshot
        self.log = log if self.dist.rank == 0 else (lambda *args, **kwargs: None)

        self.G = G.train().requires_grad_(False).to(self.device)
        self.D = D.train().requires_grad_(False).to(self.device)
        networks = dict(G=self.G, D=self.D)
        self.conditioning = ext.exclusive('conditioning')
        self.latent_sampler = ext.exclusive('latent_sampler')
        self.select_branch = ext.exclusive('select_branch')
        self.augment_p = ext.exclusive('augment_p')
        self._check(networks)

        if self.conditioning is not None and self.G.c_dim == 0:
            self.G.add_conditioning(self.conditioning.c_dim)
        self.trainable = trainable_mask(networks, ext.freeze_policy)
        check_param_groups(ext.param_groups, networks)
        self.groups = {net: [g for g in ext.param_groups if g.network == net]
                       for net in ('G', 'D')}

        self.G_ema = (G_ema if G_ema is not None else copy.deepcopy(self.G))
        self.G_ema.eval().requires_grad_(False).to(self.device)
        if self.conditioning is not None and self.G_ema.c_dim == 0:
            self.G_ema.add_conditioning(self.conditioning.c_dim)
        self.nets = ExtendedNetworks(ext, self.G_ema, G=self.G, D=self.D, device=self.device,
                                     style_mixing=opts.style_mixing,
                                     default_c=self._default_c)

        self.augment_pipe = make_augment_pipe(opts, self.device)
        self.ada = None
        if self.augment_pipe is not None and opts.aug == 'ada' and self.augment_p is None:
            self.ada = AdaController(self.augment_pipe, target=opts.ada_target,
                                     interval=opts.ada_interval, kimg=opts.ada_kimg)

        self.stats = TickStats(self.device)
        self.loss = StyleGAN2Loss(self.G, self.D, augment_pipe=self.augment_pipe,
                                  r1_gamma=opts.gamma, style_mixing_prob=opts.style_mixing,
                                  pl_weight=opts.pl_weight, extensions=ext, stats=self.stats,
                                  all_reduce_sum=(self.dist.all_reduce_sum if self.dist.active
                                                  else None))
        self.loss.ada = self.ada
        self.phases = self._make_phases()
        for row in self.parameter_counts():
            self.log(f"  {row['module']:<24s} {row['trainable']:>11,d} trainable "
                     f"{row['frozen']:>11,d} frozen")

        self.sampler = DataSampler(len(dataset), seed=opts.seed)
        self.last_snapshot = None   # the newest snapshot written (or resumed from): all finite
        self.snapshot_iteration = None
        self.cur_nimg = 0
        self.iteration = 0
        self.tick = 0
        # w_avg moves with each process's own fakes; averaging keeps the copies equal (NVIDIA
        # lets them drift and snapshots rank 0's).
        self._averaged_buffers = [buf for name, buf in self.G.named_buffers()
                                  if name.endswith('w_avg')]
        self._rank_states = None

    # -- setup ----------------------------------------------------------------------------------

    def _check(self, networks):
        """Every conflict and misfit that needs no work, before anything is changed."""
        self.ext.check()
        if self.conditioning is not None:
            owner = owner_of(self.conditioning, 'conditioning', 0)
            if self.D.c_dim != 0:
                raise ConflictError(f'{owner!r} conditions the run, but D is conditioned on the '
                                    f'dataset labels; train without --cond')
            if self.G.c_dim not in (0, self.conditioning.c_dim):
                raise UserError(f'{owner!r} conditions G on {self.conditioning.c_dim} values, but '
                                f'G is conditioned on {self.G.c_dim}; start from an '
                                f'unconditional source')
        if self.augment_p is not None and self.opts.aug != 'ada':
            raise UserError(f"{owner_of(self.augment_p, 'augment_p', 0)!r} sets the augmentation "
                            f"probability, which needs --aug ada (got --aug {self.opts.aug})")
        for index, head in enumerate(self.ext.d_heads):
            unknown = sorted(set(head.features) - set(self.D.feature_names))
            if unknown:
                raise UserError(f"D head {head.name!r} ({owner_of(head, 'd_heads', index)}) reads "
                                f'{unknown}, which this D does not have ({self.D.feature_names})')
        for mapping in self.ext.weight_reparam:
            for path in mapping:
                resolve_layer(networks, path)

    def _make_phases(self):
        opts = self.opts
        phases = []
        for net, reg_interval in [('G', opts.G_reg_interval),
                                  ('D', opts.D_reg_interval)]:
            optimizer = make_optimizer(self.trainable[net], self.groups[net], opts.lr,
                                       reg_interval)
            if optimizer is None:
                continue   # nothing on this side trains: skip its phases
            if reg_interval:
                phases.append(Phase(f'{net}main', net, optimizer, 1))
                phases.append(Phase(f'{net}reg', net, optimizer, reg_interval))
            else:
                phases.append(Phase(f'{net}both', net, optimizer, 1))
        return phases

    def parameter_counts(self):
        """Trainable and frozen parameter counts per module (G.mapping, G.synthesis.b{r}, D.b{r},
        <owner>.<group>); plugin groups count as trainable even before their start."""
        trainable = {id(p) for params in self.trainable.values() for p in params}
        modules = [(f'G.{name}', child) for name, child in self.G.named_children()
                   if name != 'synthesis']
        modules += [(f'G.synthesis.{name}', child)
                    for name, child in self.G.synthesis.named_children()]
        modules += [(f'D.{name}', child) for name, child in self.D.named_children()]
        rows = []
        for name, module in modules:
            params = list(module.parameters())
            train = sum(p.numel() for p in params if id(p) in trainable)
            rows.append(dict(module=name, trainable=train,
                             frozen=sum(p.numel() for p in params) - train))
        for index, group in enumerate(self.ext.param_groups):
            count = sum(p.numel() for p in group.module.parameters())
            rows.append(dict(module=f"{owner_of(group, 'param_groups', index)}.{group.name}",
                             trainable=count, frozen=0))
        return rows

    # -- one iteration --------------------------------------------------------------------------

    def _active_params(self, net):
        """The side's trainable mask plus the plugin groups that have started."""
        params = list(self.trainable[net])
        for group in self.groups[net]:
            if self.iteration >= group.start_iteration:
                params += list(group.module.parameters())
        return params

    def _rank_slice(self, tensor):
        return rank_items(tensor, self.dist.rank, self.dist.world_size)

    def gen_c(self, n, it):
        """The fakes' c: the conditioning's gen_c, else NVIDIA's labels of uniform dataset items."""
        cond = self.conditioning
        if cond is not None and cond.gen_c is not None:
            c = cond.gen_c(n, it)
        else:
            items = torch.randint(len(self.dataset), [n], generator=it.rng).tolist()
            c = self._item_c(items)
        return c.to(self.device, torch.float32)

    def _default_c(self, n, it):
        """The c a render gets when none is given: the training c, drawn from `it`."""
        if it is None:
            raise ValueError('synthesize needs `it` (or an explicit c) to draw the c')
        return self.gen_c(n, it)

    def _item_c(self, items):
        if self.conditioning is not None:
            return self.conditioning.real_c(raw_indices(self.dataset, items))
        return torch.from_numpy(np.stack([self.dataset.get_label(i) for i in items])
                                .astype(np.float32))

    def _latents(self, it):
        """The phase's global z and c (latent_sampler or the core's), then this rank's slice."""
        batch = self.opts.batch
        latents = self.latent_sampler(it, batch) if self.latent_sampler is not None else None
        if latents is None:
            latents = LatentBatch(torch.randn([batch, self.G.z_dim], generator=it.rng))
        if tuple(latents.z.shape) != (batch, self.G.z_dim):
            raise ValueError(f'latent_sampler returned z of shape {list(latents.z.shape)}, '
                             f'expected {[batch, self.G.z_dim]}')
        c = latents.c if latents.c is not None else self.gen_c(batch, it)
        z = self._rank_slice(latents.z.to(self.device))
        return z, self._rank_slice(c.to(self.device, torch.float32)), latents.mixing

    def step(self):
        opts, dist = self.opts, self.dist
        it = Iteration(index=self.iteration, cur_nimg=self.cur_nimg, batch_size=opts.batch,
                       device=self.device, rng=iteration_rng(opts.seed, self.iteration),
                       batch_gpu=opts.batch_gpu, rank=dist.rank, world_size=dist.world_size,
                       report=self.stats.report)
        if self.select_branch is not None:
            it.branch = self.select_branch(it)
        if self.augment_p is not None:   # _check made sure the pipe exists (--aug ada)
            self.augment_pipe.p.copy_(torch.as_tensor(float(self.augment_p(it))))
        it.augment_p = float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0

        per_rank = opts.batch // dist.world_size
        indices = rank_items(self.sampler.next_batch(opts.batch), dist.rank, dist.world_size)
        real_img, real_c = load_batch(self.dataset, indices, self.device)
        if self.conditioning is not None:
            real_c = self._item_c(indices).to(self.device, torch.float32)
        rounds = max(per_rank // opts.batch_gpu, 1)

        for phase in self.phases:
            if self.iteration % phase.interval != 0:
                continue
            params = self._active_params(phase.network)
            if not params:
                continue   # only plugin groups that have not started yet
            it.phase = phase.name
            gen_z, gen_c, mixing = self._latents(it)
            phase.optimizer.zero_grad(set_to_none=True)
            _requires_grad(params, True)
            for r_img, r_c, g_z, g_c in zip(real_img.chunk(rounds), real_c.chunk(rounds),
                                            gen_z.chunk(rounds), gen_c.chunk(rounds)):
                # Averaging over rounds makes accumulation equal to one pass over the batch.
                self.loss.accumulate_gradients(phase.name, r_img, r_c, g_z, g_c,
                                               gain=phase.interval / rounds, it=it, mixing=mixing)
            if phase.name in ('Gmain', 'Gboth'):
                self.loss.accumulate_g_loss_terms(it)
            _requires_grad(params, False)
            self._optimizer_step(phase.optimizer, params)

        for buffer in self._averaged_buffers:
            dist.all_reduce_mean(buffer)
        beta = ema_beta(opts, self.cur_nimg)
        update_ema(self.G_ema, self.G, beta)
        for _, live, twin in self.nets.ema_pairs:
            update_ema(twin, live, beta)
        self.cur_nimg += opts.batch
        self.iteration += 1
        if self.ada is not None:
            self.ada.step(opts.batch, all_reduce=dist.all_reduce_sum)

    def _optimizer_step(self, optimizer, params):
        params = [p for p in params if p.grad is not None]
        if self.dist.world_size > 1 and params:
            flat = torch.cat([p.grad.flatten() for p in params])
            self.dist.all_reduce_mean(flat)
            for param, grad in zip(params, flat.split([p.numel() for p in params])):
                param.grad.copy_(grad.reshape(param.shape))
        for param in params:
            torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
        optimizer.step()

    # -- rendering ------------------------------------------------------------------------------

    def grid_latents(self, count=None):
        count = count or self.opts.grid_size
        generator = torch.Generator().manual_seed(self.opts.seed + 123)
        z = torch.randn([count, self.G.z_dim], generator=generator).to(self.device)
        items = torch.randint(len(self.dataset), [count], generator=generator).tolist()
        return z, self._item_c(items).to(self.device, torch.float32)

    @torch.no_grad()
    def save_fakes(self, name):
        z, c = self.grid_latents()
        images = self.nets.synthesize('G_ema', z, c, noise_mode='const', mode='generate').img
        save_image_grid(images, os.path.join(self.run_dir, name), min_width=LEGIBLE_WIDTH)

    # -- state ----------------------------------------------------------------------------------

    def rank_state(self):
        """This process's own part of the state: its RNG streams (noise, augmentation, mixing)
        and its share of the ADA statistics not yet all-reduced."""
        state = dict(rng=rng_state(self.device))
        if self.ada is not None:
            state['ada_signs'] = torch.stack([self.ada.sign_sum, self.ada.sign_count]).cpu()
        return state

    def gather_rank_states(self):
        """Collect every process's rank_state() for the next loop_state(). A collective: every
        rank calls it, at the same moment (before a snapshot)."""
        self._rank_states = self.dist.all_gather_object(self.rank_state())

    def loop_state(self):
        """Everything exact resume needs, as tensors and plain values: counters, the data
        sampler, optimisers (plugin groups included), plugin modules and their EMA twins, ADA,
        pl_mean, and every process's RNG states (`ranks`; `rng` is rank 0's). The loop's own
        generators (it.rng, the sampler's order, the grid) are functions of (seed, position)."""
        ranks = self._rank_states or [self.rank_state()]
        modules, twins = self.nets.state()
        state = dict(cur_nimg=self.cur_nimg, iteration=self.iteration, tick=self.tick,
                     sampler_position=self.sampler.position,
                     sampler=dict(position=self.sampler.position, size=self.sampler.size,
                                  seed=self.sampler.seed, shuffle=self.sampler.shuffle),
                     pl_mean=self.loss.pl_mean.detach().cpu(),
                     optimizers={p.network: p.optimizer.state_dict() for p in self.phases},
                     modules=modules, twins=twins,
                     ada=self.ada.state_dict() if self.ada is not None else None,
                     augment_p=(self.augment_pipe.p.detach().cpu()
                                if self.augment_pipe is not None else None),
                     rng=ranks[0]['rng'], ranks=ranks, world_size=self.dist.world_size)
        return state

    def load_loop_state(self, state):
        """Continue exactly where loop_state() was taken (this process's share included)."""
        sampler = state.get('sampler')
        if sampler is not None and int(sampler['size']) != self.sampler.size:
            raise UserError(f"the run was trained on {sampler['size']} dataset items but this "
                            f'dataset has {self.sampler.size}; resume with the same data '
                            f'(and the same --mirror)')
        self.cur_nimg = int(state['cur_nimg'])
        self.iteration = int(state['iteration'])
        self.tick = int(state['tick'])
        self.sampler.position = int(state['sampler_position'])
        self.loss.pl_mean.copy_(torch.as_tensor(state['pl_mean']))
        same_run = 'resume with the plugins and options the run started with'
        self.nets.load_state(state.get('modules', {}), state.get('twins', {}), same_run)
        for phase in self.phases:
            try:
                phase.optimizer.load_state_dict(state['optimizers'][phase.network])
            except (KeyError, ValueError):
                raise UserError(f'the saved optimiser state of {phase.network} does not fit this '
                                f"run's trainable parameters; {same_run}") from None
        if state.get('ada') is not None and self.ada is not None:
            self.ada.load_state_dict(state['ada'])
        if state.get('augment_p') is not None and self.augment_pipe is not None:
            self.augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
        self._load_rank_state(state.get('ranks') or [dict(rng=state['rng'])])

    def _load_rank_state(self, ranks):
        """This process's RNG streams and ADA share. With another process count than the saved
        one the streams cannot continue: they restart from (seed, iteration, rank), and rank 0
        takes all pending ADA statistics (their all-reduced sum is unchanged)."""
        dist = self.dist
        same_layout = len(ranks) == dist.world_size
        if same_layout:
            set_rng_state(ranks[dist.rank]['rng'], self.device)
        else:
            self.log(f'Warning: the run was saved with {len(ranks)} process(es) and resumes with '
                     f'{dist.world_size}; noise and augmentation draws restart from the seed, so '
                     f'the continuation is equivalent but not bit-identical')
            restart = np.random.SeedSequence([self.opts.seed, self.iteration])
            seed_process(int(restart.generate_state(1, np.uint32)[0]), dist)
        if self.ada is not None and all('ada_signs' in r for r in ranks):
            if same_layout:
                signs = torch.as_tensor(ranks[dist.rank]['ada_signs'])
            elif dist.rank == 0:
                signs = sum(torch.as_tensor(r['ada_signs']) for r in ranks)
            else:
                signs = torch.zeros([2], dtype=torch.float64)
            signs = signs.to(self.ada.sign_sum.device, torch.float64)
            self.ada.sign_sum, self.ada.sign_count = signs[0].clone(), signs[1].clone()

    def sync_from_rank0(self):
        """Give every process rank 0's weights (networks, plugin modules, twins): a fresh run
        starts identical everywhere even if some construction or setup step drew randomly."""
        self.dist.broadcast_tensors([t for m in (self.G, self.D, self.G_ema)
                                     for t in list(m.parameters()) + list(m.buffers())]
                                    + self.nets.tensors())

    def snapshot(self):
        """Write network-snapshot-<kimg>.pkl (through the host's atomic save), then on_snapshot."""
        if self.save_snapshot is None or self.dist.rank != 0:
            return None
        path = os.path.join(self.run_dir, SNAPSHOT_NAME.format(kimg=self.cur_nimg // 1000))
        self.save_snapshot(path, self)
        self.last_snapshot, self.snapshot_iteration = path, self.iteration
        info = SnapshotInfo(path=path, kimg=self.cur_nimg / 1000, iteration=self.iteration)
        for fn in self.ext.on_snapshot:
            fn(info)
        return path

    # -- the run --------------------------------------------------------------------------------

    def done(self):
        opts = self.opts
        if opts.iters is not None and self.iteration >= opts.iters:
            return True
        return opts.kimg is not None and self.cur_nimg >= opts.kimg * 1000

    def _non_finite_weights(self):
        """The first of G, D and G_ema holding a NaN or inf weight, else None (one sync)."""
        modules = dict(G=self.G, D=self.D, G_ema=self.G_ema)
        flags = torch.stack([torch.stack([p.isfinite().all() for p in module.parameters()]).all()
                             for module in modules.values()]).tolist()
        return next((name for name, finite in zip(modules, flags) if not finite), None)

    def divergence(self, losses):
        """The one-line message of a tick whose losses or weights are no longer finite, or None.
        Checked once per tick: the statistics are on the host by then, the weights cost one sync."""
        bad = sorted(name for name, value in losses.items() if not math.isfinite(value))
        network = self._non_finite_weights()
        if not bad and network is None:
            return None
        first = self.stats.first_non_finite
        if bad:
            name = min(bad, key=lambda key: (first.get(key, self.iteration), key))
            what = f'the loss {name} became {losses[name]}'
            at = first.get(name, self.iteration)
        else:
            what, at = f'the weights of {network} became non-finite', self.iteration
        kept = (f'{os.path.basename(self.last_snapshot)} (iteration {self.snapshot_iteration}) '
                f'stays the newest valid snapshot' if self.last_snapshot
                else 'no snapshot had been written yet')
        return (f'training diverged at iteration {at}: {what}; nothing non-finite was saved and '
                f'{kept}; try a lower --lr (now {self.opts.lr:g}) or a higher --gamma (now '
                f'{self.opts.gamma:g})')

    def _tick_callbacks(self, losses):
        """on_tick on every rank; what each returns is logged as <owner>/<key>."""
        info = TickInfo(tick=self.tick, iteration=self.iteration, cur_nimg=self.cur_nimg,
                        kimg=self.cur_nimg / 1000, stats=losses, run_dir=self.run_dir)
        logged = {}
        for index, fn in enumerate(self.ext.on_tick):
            owner = owner_of(fn, 'on_tick', index)
            for key, value in (fn(info) or {}).items():
                logged[f'{owner}/{key}'] = float(value)
        return logged

    def run(self, progress=None):
        opts = self.opts
        write = self.dist.rank == 0
        if self.iteration == 0:
            self.nets.reset_twins()   # setup() may have changed modules since the twins' copy
            if write:
                reals = load_batch(self.dataset, range(min(len(self.dataset), 16)), 'cpu')[0]
                save_image_grid(reals, os.path.join(self.run_dir, 'reals.png'), min_width=LEGIBLE_WIDTH)
                self.save_fakes('fakes_init.png')

        tick_kimg = opts.tick
        start_time = time.time()
        tick_start_time = start_time
        tick_start_nimg = self.cur_nimg
        tick_start_iter = self.iteration
        maintenance = 0.0
        progress = progress if progress is not None else _Progress(write and sys.stderr.isatty())
        while not self.done():
            self.stats.iteration = self.iteration + 1   # counted as the tick lines count
            self.step()
            progress.update(self, tick_start_nimg)
            if not self.done() and self.cur_nimg < tick_start_nimg + tick_kimg * 1000:
                continue

            # Tick: log, stats, callbacks, images, snapshot.
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
            if self.device.type == 'cuda':   # as NVIDIA's: gpumem is each tick's own peak
                torch.cuda.reset_peak_memory_stats(self.device)
            diverged = self.divergence(losses)
            entry.update(self._tick_callbacks(losses) if diverged is None else {})
            snap = opts.snap
            snapshot_due = not diverged and (self.done() or bool(snap) and self.tick % snap == 0)
            if snapshot_due:
                self.gather_rank_states()   # every rank, before rank 0 writes
            if write:
                progress.clear()
                self.log(format_tick(entry))
                with open(os.path.join(self.run_dir, 'stats.jsonl'), 'a') as f:
                    f.write(json.dumps(entry) + '\n')   # non-finite as NaN: gda report marks it
            if diverged:
                progress.clear()
                raise TrainingDiverged(diverged)
            if write and snapshot_due:
                # Images and snapshot must not move the training streams: a resumed run then
                # matches an uninterrupted one whatever the snapshot cadence was.
                devices = [self.device] if self.device.type == 'cuda' else []
                with torch.random.fork_rng(devices=devices):
                    self.save_fakes(f'fakes{self.cur_nimg // 1000:06d}.png')
                    self.snapshot()
            self._rank_states = None
            tick_start_nimg = self.cur_nimg
            tick_start_iter = self.iteration
            tick_start_time = time.time()
            maintenance = tick_start_time - maintenance_start
        progress.clear()


def _requires_grad(params, flag):
    for param in params:
        param.requires_grad_(flag)


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
