"""Structural Consistency Score (RSSA, Xiao et al. CVPR 2022, eq. 9-10).

For the same latent z rendered by the source and the adapted generator (the same latent pipeline
rules as `gda generate --pairs`): edge maps H_s, H_t and
SCS = 2 sum(H_s H_t) / (sum H_s^2 + sum H_t^2), 1 for identical structure, averaged over 500 z.
Two maps without any edge count as identical (1).
"""

import torch

from stylegan2_ada.errors import UserError

from .edges import edge_function
from .evaluation import latents

NAME = 'scs'
DEFAULT_NUM = 500
PAIR_STREAM = 2  # z of scs pairs come from their own seeded stream


def structural_consistency(edges_source, edges_target):
    """[N] SCS of paired edge maps [N, ...] (non-negative)."""
    s = edges_source.flatten(1).to(torch.float64)
    t = edges_target.flatten(1).to(torch.float64)
    numerator = 2 * (s * t).sum(1)
    denominator = s.square().sum(1) + t.square().sum(1)
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.ones_like(denominator))


@torch.no_grad()
def scs_of_pairs(pairs, edges, z_dim, num, seed=0, batch=32, device='cpu'):
    """(mean, std) of SCS over `num` pairs(z) -> (source images, adapted images) in [-1, 1]."""
    scores = []
    for lo in range(0, num, batch):
        z = latents(z_dim, lo, min(lo + batch, num), seed, stream=PAIR_STREAM).to(device)
        source, adapted = pairs(z)
        if source.shape[2:] != adapted.shape[2:]:
            raise UserError(f'scs pairs differ in size: source {tuple(source.shape[2:])}, adapted '
                            f'{tuple(adapted.shape[2:])}')
        scores.append(structural_consistency(edges(source), edges(adapted)).cpu())
    scores = torch.cat(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def needs(num):
    return []


def compute(ev, num):
    if ev.pairs is None:
        raise UserError('scs needs the source generator: the network file stores none (gda snapshots keep it '
                        'unless saved without); pass the source network with --source')
    hed = ev.detector_paths.get('hed')
    mean, std = scs_of_pairs(ev.pairs, edge_function(ev.edges, hed, ev.device), ev.z_dim, num, seed=ev.seed,
                             batch=ev.batch, device=ev.device)
    return dict(results=dict(scs=mean, scs_std=std), protocol=dict(num_pairs=num, edges=ev.edges))
