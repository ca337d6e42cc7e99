"""rick: RICK, removing incompatible knowledge (Zhao, Du, Abdollahzadeh, Pang, Lin, Yan, Cheung,
"Exploring Incompatible Knowledge Transfer in Few-shot Image Generation", CVPR 2023), ported from
the official rosinality code (256 px) to our NVIDIA-layout StyleGAN2 at any resolution.

During a warm-up only D's epilogue trains. From then on, every --rick-fisher-freq iterations the
Fisher information of G's and D's filters (gda_core.filters) is estimated on the target and the
filters are re-partitioned (partition.py): the least important are pruned (zeroed, and kept at
zero), the most important frozen, the rest fine-tuned. Freezing is a per-filter gradient mask
(masks.py); pruned filters are zeros in the weights themselves. docs/methods.md lists the settings
and every deviation from the official code.
"""

from gda_hooks import hookimpl, non_negative, Option, percentile, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import FreezePolicy

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


# README, FFHQ -> Babies; ema_kimg 0.625 is the official EMA decay 0.5^(32/10000) per iteration at
# batch 2; the official commands train without augmentation.
OFFICIAL = dict(batch=2, lr=0.002, gamma=10, iters=1750, ema_kimg=0.625, aug='noaug')


@hookimpl
def options():
    return [
        Option('fisher_freq', int, 50, 'Re-estimate the Fisher and re-partition the filters every '
               'N iterations after the warm-up', validate=positive),
        Option('warmup', int, 250, "Iterations in which only D's epilogue trains",
               validate=non_negative),
        Option('fisher_quantile', float, 40.0, 'Freeze the filters above this percentile of '
               'importance (official: 40 Babies, 85 AFHQ-Cat)', validate=percentile),
        Option('prune_quantile', float, 0.1, 'Prune the filters at or below this percentile '
               '(0-100 scale; official: 0.1 Babies, 0.075 AFHQ-Cat)', validate=percentile),
        Option('fisher_batches', int, 5, 'Batches of --batch (fake, real) pairs per Fisher '
               'estimate (official --num_fisher_img)', validate=positive),
    ]


@hookimpl
def propose_defaults():
    return dict(OFFICIAL)


def _trained_layers(G):
    """G's layers RICK trains at all (rosinality `convs`): synthesis conv0/conv1 above 4x4."""
    return tuple(f'G.synthesis.b{res}.{name}.' for res in G.synthesis.block_resolutions
                 if res >= 8 for name in ('conv0', 'conv1'))


def _hooked(run):
    """{qualified name: parameter} whose gradients the partition masks: every parameter of the
    trained G layers and of D's blocks (fromRGB aside, which never trains)."""
    found = {f'G.{n}': p for n, p in run.G.named_parameters()
             if f'G.{n}'.startswith(_trained_layers(run.G))}
    found.update({f'D.{n}': p for n, p in run.D.named_parameters()
                  if n.split('.')[0] != 'b4' and '.fromrgb.' not in f'.{n}'
                  and n.split('.')[0].startswith('b')})
    return found


def _state(run):
    """The run's units, masks and partition, made once (hooks registered on first use)."""
    from gda_core import filters
    from .masks import GradientMasks
    ns = run.ns
    if not hasattr(ns, 'units'):
        if run.G_s is None:
            raise UserError('rick adapts a pretrained GAN, so it needs a source; give '
                            '--source PATH|URL|PRESET instead of --source none')
        ns.units = filters.units(run.G, run.D)
        ns.states = None          # None: still warming up
        ns.updates = 0
        ns.masks = GradientMasks()
        ns.params = _hooked(run)
        for name, param in ns.params.items():
            ns.masks.watch(name, param)
        _refresh_masks(run)
    return ns


def _refresh_masks(run):
    """Warm-up: every hooked gradient is zero. After: unit rows by state, the rest untouched."""
    import torch
    from . import partition
    ns = run.ns
    if ns.states is None:
        ns.masks.masks = {name: torch.zeros([], device=p.device) for name, p in ns.params.items()}
        return
    masks = {}
    for unit in ns.units:
        for name in (unit.weight, unit.bias):
            if name is not None:
                masks[name] = partition.row_mask(ns.states[unit.layer], ns.params[name])
    ns.masks.masks = masks


@hookimpl
def freeze_policy(run):
    if run.mode == 'generate':
        return None
    ns = _state(run)
    trained = _trained_layers(run.G)
    g_weights = [u.weight for u in ns.units if u.pool == 'g_conv']

    def frozen(qualname):
        if qualname.startswith('G.'):
            return not qualname.startswith(trained)
        return '.fromrgb.' in qualname
    return FreezePolicy(frozen=frozen, requires=g_weights)


def _due(run, index):
    warmup, freq = run.options['warmup'], run.options['fisher_freq']
    return index >= warmup and (index - warmup) % freq == 0


def repartition(run, index):
    """Estimate the Fisher, take the new partition, zero the newly pruned filters everywhere."""
    from . import estimate, partition
    ns = run.ns
    samples = run.options['fisher_batches'] * int(run.core['batch'])
    states = None
    if run.rank == 0:   # G_ema's noise draws from each process's own RNG: one decides for all
        with ns.masks.paused():
            fisher = estimate.fisher(run, ns.units, samples, index)
        scores = partition.importance(ns.units, fisher)
        states = partition.decide(scores, run.options['fisher_quantile'],
                                  run.options['prune_quantile'], ns.states)
    ns.states = run.broadcast(states)
    ns.updates += 1
    nets = dict(G=[run.G, run.G_ema], D=[run.D])
    for unit in ns.units:
        partition.zero_pruned(unit, ns.states[unit.layer], nets[unit.network])
    _refresh_masks(run)
    for name, param in ns.params.items():   # this iteration's G gradients are already in
        mask = ns.masks.masks.get(name)
        if param.grad is not None and mask is not None:
            param.grad.mul_(mask)


@hookimpl
def g_loss_terms(run):
    """The schedule rides on the once-per-iteration G term call (it adds no loss)."""
    from . import partition
    if run.mode == 'generate':
        return []
    ns = _state(run)

    def schedule(it):
        if _due(run, it.index):
            repartition(run, it.index)
        if ns.states is not None:
            for key, value in partition.counts(ns.states).items():
                it.report(f'rick/{key}', float(value))
        return {}
    return [schedule]


@hookimpl
def state_dict(run):
    ns = run.ns
    return dict(updates=int(ns.updates),
                states=None if ns.states is None else {k: v.clone() for k, v in ns.states.items()})


@hookimpl
def load_state_dict(run, state):
    import torch
    if run.mode == 'generate':
        return   # pruned filters are zeros in the weights; the rest only shapes training
    ns = _state(run)
    ns.updates = int(state['updates'])
    ns.states = (None if state['states'] is None else
                 {k: torch.as_tensor(v, dtype=torch.int8) for k, v in state['states'].items()})
    _refresh_masks(run)
