"""The filters AdAM and RICK rank, in NVIDIA's layout, and how their official code ranks them.

Both methods (Zhao et al., NeurIPS 2022 and CVPR 2023, rosinality code at 256 px) take the same
decisions over the same three pools of filters, which in NVIDIA's names are:

- 'g_conv': the output filters of G's synthesis convolutions above 4x4 (b8 ... bN conv0, conv1;
  rosinality's `convs`, without `conv1`, the 4x4 layer, and without toRGB);
- 'g_fc':   the rows of those layers' style affines (`convs.*.conv.modulation`), one per input
  channel of the convolution;
- 'd_conv': the output filters of D's block convolutions conv0, conv1 and skip (rosinality's
  `convs.1...`, without fromRGB and without the epilogue, `final_*`).

A filter's importance combines a score per row of its weight with its bias's Fisher when it has a
bias the official code counts (the affines' and D's conv0/conv1): (row + bias) / 2; G's
convolutions and D's skip use the row score alone. A cut is a percentile of each pool.
Kept in the host because two plugins share it without importing each other.
"""

import dataclasses
from typing import Dict, List, Optional

import torch

from .fisher import percentile

POOLS = ('g_conv', 'g_fc', 'd_conv')


@dataclasses.dataclass(frozen=True)
class Unit:
    """One layer's filters: `layer` is its path ('G.synthesis.b8.conv0.affine'); `weight` and
    `bias` the qualified names of the parameters whose rows the filters are."""
    layer: str
    pool: str
    weight: str
    bias: Optional[str] = None

    @property
    def network(self):
        return self.layer.split('.', 1)[0]


def units(G, D=None):
    """Every filter unit of G (and D when given), in a fixed order."""
    found = []
    for res in G.synthesis.block_resolutions:
        if res < 8:
            continue
        block = getattr(G.synthesis, f'b{res}')
        for name in ('conv0', 'conv1'):
            if hasattr(block, name):
                path = f'G.synthesis.b{res}.{name}'
                found.append(Unit(path, 'g_conv', f'{path}.weight'))
                found.append(Unit(f'{path}.affine', 'g_fc', f'{path}.affine.weight',
                                  f'{path}.affine.bias'))
    if D is not None:
        for res in D.block_resolutions:
            block = getattr(D, f'b{res}')
            for name in ('conv0', 'conv1', 'skip'):
                layer = getattr(block, name, None)
                if layer is not None:
                    path = f'D.b{res}.{name}'
                    bias = f'{path}.bias' if getattr(layer, 'bias', None) is not None else None
                    found.append(Unit(path, 'd_conv', f'{path}.weight', bias))
    return found


def row_mean(tensor):
    """Mean over everything but the first (output) dimension: one value per filter."""
    return tensor.reshape(tensor.shape[0], -1).to(torch.float32).mean(dim=1)


def importance(row_score, bias_fisher=None):
    """The official combination: (row + bias) / 2 with a bias, the row score alone without."""
    row_score = row_score.to(torch.float32)
    if bias_fisher is None:
        return row_score
    return (row_score + bias_fisher.to(torch.float32).reshape(-1)) / 2


def cuts(scores: Dict[Unit, torch.Tensor], q):
    """{pool: the q-th percentile of the pool's scores} over the pools present."""
    pools: Dict[str, List[torch.Tensor]] = {}
    for unit, score in scores.items():
        pools.setdefault(unit.pool, []).append(score)
    return {pool: percentile(values, q) for pool, values in pools.items()}


def qualified(networks, name):
    """'G.synthesis.b8.conv0.weight' -> that parameter of networks['G']."""
    net, _, rest = name.partition('.')
    return networks[net].get_parameter(rest)
