"""One training iteration: NVIDIA's phases, gradient accumulation, EMA and ADA, with the injection
points of extensions.py on the way.

One iteration = one G step and one D step over the whole global batch (all processes, all
gradient-accumulation rounds); regularisation phases run every `G_reg_interval` /
`D_reg_interval` iterations. What must agree between processes is drawn from it.rng or
all-reduced; each process computes its strided share of the batch (`rank_items`).
"""

import dataclasses
from operator import attrgetter

import numpy as np
import torch

from . import precision
from .augment import AUGPIPE_SPECS, AdaController, AugmentPipe
from .cpu_allocator import keep_freed_memory
from .extensions import Iteration, LatentBatch
from .loss import StyleGAN2Loss
from .ops import conv2d_gradfix, grid_sample_gradfix
from .training_stats import TickStats

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


def configure_torch(device, cpu_bf16=False):
    """Process-wide settings of NVIDIA's training loop, set before any network is built."""
    precision.cpu_bf16 = cpu_bf16 and device.type == 'cpu'
    # R1 and path length skip the inner weight gradients, and R1's double backward through ADA's
    # grid_sample uses our own derivative (torch's CUDA grid_sampler_2d_backward has none:
    # "derivative ... is not implemented").
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = True
    if device.type == 'cpu':
        keep_freed_memory()   # page faults on fresh tensors cost as much as small convs
    else:   # autotuned convolutions, full fp32 (no TF32) maths
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


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


def make_phases(networks, opts):
    """Gmain/Greg and Dmain/Dreg (Gboth/Dboth without lazy regularisation), sharing one Adam
    per side; a side with nothing to train has no phases."""
    phases = []
    for net, reg_interval in [('G', opts.G_reg_interval), ('D', opts.D_reg_interval)]:
        optimizer = make_optimizer(networks.trainable[net], networks.groups[net], opts.lr,
                                   reg_interval)
        if optimizer is None:
            continue
        if reg_interval:
            phases.append(Phase(f'{net}main', net, optimizer, 1))
            phases.append(Phase(f'{net}reg', net, optimizer, reg_interval))
        else:
            phases.append(Phase(f'{net}both', net, optimizer, 1))
    return phases


def _requires_grad(params, flag):
    for param in params:
        param.requires_grad_(flag)


class TrainingStep:
    """`step()` runs one iteration on `networks` (TrainingNetworks) and counts it.

    Holds what the iterations carry from one to the next: optimisers (`phases`), the loss and its
    pl_mean, the augmentation pipe and ADA, the data sampler, the tick statistics and the
    counters `iteration` and `cur_nimg`.
    """

    # The networks' parts under the loop's names (the host, plugins and tests use them).
    G = property(attrgetter('networks.G'))
    D = property(attrgetter('networks.D'))
    G_ema = property(attrgetter('networks.G_ema'))
    nets = property(attrgetter('networks.nets'))
    ext = property(attrgetter('networks.ext'))
    trainable = property(attrgetter('networks.trainable'))
    gen_c = property(attrgetter('networks.labels.gen_c'))

    def __init__(self, networks, dataset, opts, device, dist):
        self.networks, self.dataset, self.opts, self.device, self.dist = (
            networks, dataset, opts, device, dist)
        ext = networks.ext
        self.latent_sampler = ext.exclusive('latent_sampler')
        self.select_branch = ext.exclusive('select_branch')
        self.augment_p = ext.exclusive('augment_p')
        self.augment_pipe = make_augment_pipe(opts, device)
        self.ada = None
        if self.augment_pipe is not None and opts.aug == 'ada' and self.augment_p is None:
            self.ada = AdaController(self.augment_pipe, target=opts.ada_target,
                                     interval=opts.ada_interval, kimg=opts.ada_kimg)
        self.stats = TickStats(device)
        self.loss = StyleGAN2Loss(self.G, self.D, augment_pipe=self.augment_pipe,
                                  r1_gamma=opts.gamma, style_mixing_prob=opts.style_mixing,
                                  pl_weight=opts.pl_weight, extensions=ext, stats=self.stats,
                                  all_reduce_sum=dist.all_reduce_sum if dist.active else None)
        self.loss.ada = self.ada
        self.phases = make_phases(networks, opts)
        self.sampler = DataSampler(len(dataset), seed=opts.seed)
        self.cur_nimg = 0
        self.iteration = 0
        # w_avg moves with each process's own fakes; averaging keeps the copies equal (NVIDIA
        # lets them drift and snapshots rank 0's).
        self._averaged_buffers = [buf for name, buf in self.G.named_buffers()
                                  if name.endswith('w_avg')]

    def done(self):
        opts = self.opts
        if opts.iters is not None and self.iteration >= opts.iters:
            return True
        return opts.kimg is not None and self.cur_nimg >= opts.kimg * 1000

    def _rank_slice(self, tensor):
        return rank_items(tensor, self.dist.rank, self.dist.world_size)

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
        if self.augment_p is not None:   # check_extensions made sure the pipe exists (--aug ada)
            self.augment_pipe.p.copy_(torch.as_tensor(float(self.augment_p(it))))
        it.augment_p = float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0

        indices = rank_items(self.sampler.next_batch(opts.batch), dist.rank, dist.world_size)
        real_img, real_c = load_batch(self.dataset, indices, self.device)
        labels = self.networks.labels
        if labels.conditioning is not None:
            real_c = labels.item_c(indices).to(self.device, torch.float32)
        for phase in self.phases:
            if self.iteration % phase.interval == 0:
                self._phase(phase, it, real_img, real_c)
        self._advance()

    def _phase(self, phase, it, real_img, real_c):
        """One phase on this rank's share of the batch, in --batch-gpu rounds, then its step."""
        params = self.networks.active_params(phase.network, self.iteration)
        if not params:
            return   # only plugin groups that have not started yet
        rounds = max(self.opts.batch // self.dist.world_size // self.opts.batch_gpu, 1)
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

    def _advance(self):
        """After the phases: w_avg agreed, G_ema and the twins lerped, the counters and ADA on."""
        opts, dist = self.opts, self.dist
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


__all__ = ['TrainingStep', 'DataSampler', 'Phase', 'rank_items', 'load_batch', 'iteration_rng',
           'ema_beta', 'update_ema', 'configure_torch', 'make_augment_pipe', 'make_optimizer',
           'make_phases']
