"""CDC's cross-domain distance consistency (Ojha et al., CVPR 2021, §3.1) as plain tensor maths.

For each sample i of a batch, the cosine similarities of its features at one layer to the features
of every other sample j != i, softmaxed over the N-1 others, give a distribution y_i. The loss
compares the source generator's y_i with the adapted generator's. Kept free of networks so that it
can be checked by hand.
"""

import torch
import torch.nn.functional as F

from .choices import DIRECTIONS


def pick_layers(layers, n, rng):
    """One layer per sample, uniformly from `layers`, drawn from `rng` (the same on every rank)."""
    picks = torch.randint(len(layers), [n], generator=rng)
    return [layers[int(k)] for k in picks]


def log_similarity_distributions(features, picks):
    """log y_i for every sample i: [N, N-1], the log-softmax over j != i (in order of j) of
    cos(f(z_i), f(z_j)) on the flattened fp32 features of layer picks[i].

    features maps a layer name to its [N, ...] maps; every picked layer must be present.
    """
    rows = []
    for i, layer in enumerate(picks):
        flat = features[layer].flatten(1).float()
        similarity = F.cosine_similarity(flat[i:i + 1], flat, dim=1)
        rows.append(torch.cat([similarity[:i], similarity[i + 1:]]))
    return torch.log_softmax(torch.stack(rows), dim=1)


def distance_consistency(source, target, picks, direction='official'):
    """The unweighted loss: KL between the source's and the target's y_i, averaged over all
    N*(N-1) entries (KLDivLoss's 'mean', computed explicitly)."""
    if direction not in DIRECTIONS:
        raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}')
    if len(picks) < 2:
        raise ValueError('distance consistency needs at least 2 samples')
    log_s = log_similarity_distributions(source, picks)
    log_t = log_similarity_distributions(target, picks)
    if direction == 'paper':
        log_s, log_t = log_t, log_s
    return (log_s.exp() * (log_s - log_t)).mean()
