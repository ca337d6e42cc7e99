"""adam: AdAM, adaptation-aware kernel modulation (Zhao, Chandrasegaran, Abdollahzadeh, Cheung,
"Few-shot Image Generation via Adaptation-Aware Kernel Modulation", NeurIPS 2022), ported from the
official rosinality code (256 px) to our NVIDIA-layout StyleGAN2 at any resolution.

Two stages, as the official scripts. Importance probing (`setup`, cached per source + target):
a short adaptation of rank-one kernel modulations W' = W * (1 + v u^T) of every G and D layer,
then the Fisher information of u, v (and of the ranked biases) on the probed EMA networks. Main
adaptation: fresh modulations; the filters whose probed importance is above the
--adam-fisher-quantile percentile of their pool (gda_core.filters) are kept (base frozen) and
modulated, the others are fine-tuned without modulation. `gda export` folds the modulation into
plain weights. docs/methods.md lists the settings and every deviation from the official code.
"""

from gda_hooks import hookimpl, Option, percentile, positive
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import FreezePolicy, ParamGroup

from .layers import d_layers, frozen_names, g_layers

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


OFFICIAL = dict(batch=4, lr=0.002, gamma=10, iters=1500, aug='noaug')   # _bash_main_adaptation.sh


@hookimpl
def options():
    return [
        Option('fisher_quantile', float, 50.0, 'Keep and modulate the filters above this '
               'percentile of probed importance, fine-tune the rest (official: 50 Babies, '
               '75 AFHQ-Cat)', validate=percentile),
        Option('probe_iters', int, 500, 'Importance-probing iterations (official --fisher_iter)',
               validate=positive),
        Option('fisher_samples', int, 1000, '(fake, real) pairs the probed Fisher averages '
               '(official 250 batches of 4)', validate=positive),
        Option('cache', bool, True, 'Reuse a probing result of the same source, target and '
               'probing settings (in $GDA_CACHE_DIR/gda-adam)'),
    ]


@hookimpl
def propose_defaults():
    return dict(OFFICIAL)


def _modules(run):
    """This run's modulations, one per modulated layer, built once (ModuleDicts per side)."""
    import torch
    from gda_core import filters
    from .modulation import KernelModulation, slot_name
    from .probing import _seed
    ns = run.ns
    if not hasattr(ns, 'g_mods'):
        if run.mode != 'generate' and run.G_s is None:
            raise UserError('adam modulates a pretrained GAN, so it needs a source; give '
                            '--source PATH|URL|PRESET instead of --source none')
        generator = torch.Generator().manual_seed(_seed(run.seed, 'adam-init'))

        def build(net, paths):
            return torch.nn.ModuleDict({slot_name(path): KernelModulation(
                net.get_submodule(path.split('.', 1)[1]).weight.shape, generator)
                for path in paths})
        ns.g_paths = g_layers(run.G)
        ns.g_mods = build(run.G, ns.g_paths)
        has_d = run.mode != 'generate' and run.D is not None
        ns.d_paths = d_layers(run.D) if has_d else []
        ns.d_mods = build(run.D, ns.d_paths) if has_d else None
        ns.units = filters.units(run.G, run.D if has_d else None)
    return ns


def _module(ns, path):
    from .modulation import slot_name
    return (ns.g_mods if path.startswith('G.') else ns.d_mods)[slot_name(path)]


@hookimpl
def weight_reparam(run):
    ns = _modules(run)
    return {path: _module(ns, path) for path in ns.g_paths + ns.d_paths}


@hookimpl
def freeze_policy(run):
    if run.mode == 'generate':
        return None
    ns = _modules(run)
    ranked = [unit.weight for unit in ns.units]
    frozen = frozen_names(run.G, run.D, ranked)
    return FreezePolicy(frozen=lambda qualname: qualname in frozen, requires=ranked)


@hookimpl
def param_groups(run):
    ns = _modules(run)
    groups = [ParamGroup('modulation_G', ns.g_mods, network='G', ema=True)]
    if ns.d_mods is not None:
        groups.append(ParamGroup('modulation_D', ns.d_mods, network='D', ema=False))
    return groups


def _settings(run):
    core = run.core
    return dict(probe_iters=run.options['probe_iters'], samples=run.options['fisher_samples'],
                seed=run.seed, batch=core['batch'], lr=core['lr'], gamma=core['gamma'],
                pl_weight=core['pl_weight'], style_mixing=core['style_mixing'],
                ema_kimg=core['ema_kimg'], ema_rampup=core.get('ema_rampup'))


def importance(units, fisher):
    """{unit: per-filter importance} from the probed Fisher: mean(F_u) + F_v, averaged with the
    bias's Fisher where the official code counts it (gda_core.filters.importance)."""
    from gda_core import filters
    scores = {}
    for unit in units:
        row = fisher[f'{unit.layer}.u'].mean() + fisher[f'{unit.layer}.v']
        scores[unit] = filters.importance(row, fisher[unit.bias] if unit.bias else None)
    return scores


def decide(scores, q):
    """{unit: keep mask}: importance strictly above the pool's q-th percentile (official)."""
    from gda_core import filters
    cut = filters.cuts(scores, q)
    return {unit: score > cut[unit.pool] for unit, score in scores.items()}


def _apply(run, keep):
    import torch
    ns = _modules(run)
    for unit in ns.units:
        module = _module(ns, unit.layer)
        module.keep.copy_(keep[unit.layer].to(module.keep))
        with torch.no_grad():   # the official code zeroes v on the fine-tuned filters
            module.v.mul_(module.keep)


@hookimpl
def setup(run):
    """Importance probing (or its cached result), then the keep/fine-tune partition."""
    from . import cache
    from .probing import probe
    ns = _modules(run)
    key = cache.probe_key(run, _settings(run))
    fisher = cache.load(key) if run.options['cache'] else None
    ns.cached = fisher is not None
    if fisher is None:
        log = print if run.rank == 0 else None
        fisher = run.broadcast(probe(run, run.options['probe_iters'],
                                     run.options['fisher_samples'], log) if run.rank == 0 else None)
        if run.rank == 0 and run.options['cache']:
            cache.save(key, fisher)
    scores = importance(ns.units, fisher)
    keep = decide(scores, run.options['fisher_quantile'])
    ns.key = key
    ns.importance = {unit.layer: score for unit, score in scores.items()}
    _apply(run, {unit.layer: mask for unit, mask in keep.items()})
    kept = sum(int(m.sum()) for m in keep.values())
    total = sum(m.numel() for m in keep.values())
    run.report('adam/kept_fraction', kept / max(total, 1))


@hookimpl
def state_dict(run):
    ns = run.ns
    return dict(probe_key=ns.key, cached=bool(ns.cached),
                importance={layer: value.detach().cpu() for layer, value in ns.importance.items()},
                keep={unit.layer: _module(ns, unit.layer).keep.detach().cpu()
                      for unit in ns.units})


@hookimpl
def load_state_dict(run, state):
    import torch
    ns = _modules(run)
    ns.key, ns.cached = state['probe_key'], state['cached']
    ns.importance = {layer: torch.as_tensor(v) for layer, v in state['importance'].items()}
    for unit in ns.units:
        _module(ns, unit.layer).keep.copy_(torch.as_tensor(state['keep'][unit.layer]))


@hookimpl
def fold(run, G):
    from .modulation import fold_into
    ns = _modules(run)
    for path in ns.g_paths:
        fold_into(G.get_submodule(path.split('.', 1)[1]), _module(ns, path))

