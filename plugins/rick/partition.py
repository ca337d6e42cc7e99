"""RICK's partition of filters (train_dynamic_update_prune.py, facts only): at each Fisher
estimate, filters above the pool's --rick-fisher-quantile percentile are frozen, those at or below
the --rick-prune-quantile percentile are pruned, the rest fine-tuned; once pruned, a filter stays
pruned (the official code merges the pruned indices of every estimate).

A unit's state is an int8 vector with one entry per filter. Pruned filters are plain zeros in the
weights of G, G_ema and D (rows of the weight and of the bias the unit counts), so snapshots,
`gda generate` and `gda export` need nothing from the plugin to keep them pruned.
"""

import torch

from gda_core import filters

PRUNED, FROZEN, TUNED = 0, 1, 2


def importance(units, fisher):
    """{unit: per-filter importance}: the row mean of the weight's Fisher, averaged with the bias's
    where the official code counts it. `fisher` maps qualified parameter names to Fisher tensors."""
    return {unit: filters.importance(filters.row_mean(fisher[unit.weight]),
                                     fisher[unit.bias] if unit.bias else None)
            for unit in units}


def decide(scores, fisher_quantile, prune_quantile, previous=None):
    """{unit layer: int8 states} from importance; `previous` states keep their pruned filters."""
    freeze_cut = filters.cuts(scores, fisher_quantile)
    prune_cut = filters.cuts(scores, prune_quantile)
    states = {}
    for unit, score in scores.items():
        state = torch.full(score.shape, TUNED, dtype=torch.int8)
        state[score > freeze_cut[unit.pool]] = FROZEN
        state[score <= prune_cut[unit.pool]] = PRUNED
        if previous is not None:
            state[previous[unit.layer] == PRUNED] = PRUNED
        states[unit.layer] = state
    return states


def row_mask(state, param):
    """1 where the filter trains, 0 elsewhere, shaped to broadcast over `param`'s rows."""
    mask = (state == TUNED).to(param.dtype).to(param.device)
    return mask.reshape([-1] + [1] * (param.ndim - 1))


@torch.no_grad()
def zero_pruned(unit, state, networks):
    """Write zeros into the pruned rows of the unit's weight (and bias) in every given network
    that has the unit ({'G': G, 'G_ema': G_ema, 'D': D} keyed by the unit's network)."""
    pruned = state == PRUNED
    if not bool(pruned.any()):
        return
    for net in networks:
        for name in (unit.weight, unit.bias):
            if name is not None:
                param = net.get_parameter(name.split('.', 1)[1])
                param[pruned.to(param.device)] = 0


def counts(states):
    """{'pruned': n, 'frozen': n, 'tuned': n} over all units."""
    total = torch.cat([s.reshape(-1) for s in states.values()]) if states else torch.zeros([0])
    return dict(pruned=int((total == PRUNED).sum()), frozen=int((total == FROZEN).sum()),
                tuned=int((total == TUNED).sum()))
