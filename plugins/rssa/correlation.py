"""RSSA's cross-domain spatial structural consistency (Xiao et al., CVPR 2022, §3.2): the maths.

Self-correlation consistency (SCC, eq. 3-4): C(x,y)(i,j) = cos(f(x,y), f(i,j)) within one feature
map, compared between G_s and G_t. Disturbance correlation consistency (DCC, eq. 5-6): for two
samples j, k of a latent neighbourhood, D_jk(x,y) = softmax over a delta x delta window Q around
(x,y) of cos(f_j(x,y), f_k(m,n)), compared between G_s and G_t. Everything here is a pure function
of feature maps [N, C, H, W]; the plugin decides which maps and which latents.
"""

import torch
import torch.nn.functional as F

FULL_MAX = 32   # paper preset: maps up to this size give one whole-map self-correlation matrix
MAX_RES = 256   # larger maps are skipped (official code: O((wh)^2) memory)
OFFICIAL_MIN = 64   # official SCC uses only maps of 64..256 px (train_*_proj.py, current version)
OFFICIAL_DCC_MAX = 128   # official DCC: maps up to 128 px, stopping after the first 128 px one


def unit(feat):
    """Unit-length channel vectors, so a dot product is the cosine similarity."""
    return F.normalize(feat, dim=1)


def self_correlation(feat, normalise=True):
    """[N, C, H, W] -> [N, HW, HW]: eq. 3 for every position pair of each map (plain dot
    products when normalise=False: the official code's pooled vectors)."""
    flat = (unit(feat) if normalise else feat).flatten(2)
    return flat.transpose(1, 2) @ flat


def windows(feat, size, stride):
    """[N, C, H, W] -> [N * P, C, size, size]: the P patches of a size x size grid."""
    n, c = feat.shape[:2]
    patches = F.unfold(feat, size, stride=stride)                 # [N, C*size*size, P]
    count = patches.shape[-1]
    patches = patches.reshape(n, c, size, size, count).permute(0, 4, 1, 2, 3)
    return patches.reshape(n * count, c, size, size)


def scc_matrices(feat, official=False):
    """The self-correlation matrices SCC compares for one layer, as a list of passes.

    Maps of 64..256 px (the paper: "aggregate adjacent feature vectors by average pooling and
    break the map into patches"), as the official code does it: average-pool to half size, then
    local matrices inside the four windows of half the pooled size, plus a second pass on the
    centre window of the grid shifted by half a window. Maps above 256 are skipped.
    paper (official=False): smaller maps give one whole-map matrix, and the pooled vectors are
    re-normalised, so every entry is a cosine as eq. 3 defines it.
    official=True: smaller maps are skipped and the features are normalised before pooling only
    (entries are dot products of averaged unit vectors), as in train_face_proj.py and
    train_church_proj.py.
    """
    size = feat.shape[-1]
    if size > MAX_RES or official and size < OFFICIAL_MIN:
        return []
    if size <= FULL_MAX:
        return [self_correlation(feat)]
    if official:
        feat = unit(feat)
    pooled = F.adaptive_avg_pool2d(feat, size // 2)
    window = size // 4
    shift = window // 2
    centre = pooled[:, :, shift:size // 2 - shift, shift:size // 2 - shift]
    normalise = not official
    return [self_correlation(windows(pooled, window, window), normalise),
            self_correlation(windows(centre, window, window), normalise)]


def scc_loss(source_feats, target_feats, distance='smooth_l1', official=False):
    """Eq. 4: sum over layers (and passes) of the mean distance between the source and target
    self-correlation matrices; distance 'smooth_l1' (the paper and the official code) or 'l1'.
    None when no layer takes part (official=True on maps below 64 px)."""
    measure = F.smooth_l1_loss if distance == 'smooth_l1' else F.l1_loss
    total = None
    for source, target in zip(source_feats, target_feats):
        for c_s, c_t in zip(scc_matrices(source, official), scc_matrices(target, official)):
            term = measure(c_t, c_s.detach())
            total = term if total is None else total + term
    return total


def scc_layers(sizes, official=False):
    """Indices of the layers (map sizes in order) that take part in SCC."""
    low = OFFICIAL_MIN if official else 1
    return [i for i, size in enumerate(sizes) if low <= size <= MAX_RES]


def dcc_layers(sizes, official=False):
    """Indices of the layers (map sizes in order) that take part in DCC: all up to 256 px, or the
    official code's choice: up to 128 px, stopping after the first 128 px map."""
    if not official:
        return [i for i, size in enumerate(sizes) if size <= MAX_RES]
    chosen = []
    for i, size in enumerate(sizes):
        if size <= OFFICIAL_DCC_MAX:
            chosen.append(i)
        if size == OFFICIAL_DCC_MAX:
            break
    return chosen


def window_distributions(f_j, f_k, delta):
    """Eq. 5: [B, C, H, W] pairs -> [B, delta*delta, H, W], at each (x, y) of f_j the softmax over
    the delta x delta window of f_k centred on (x, y) of the cosine similarities.

    Window positions outside the map take no part (their probability is 0), so every
    distribution sums to 1. delta is odd: Q = {(m, n) : |m - x| <= delta // 2, |n - y| <= ...}.
    """
    if delta < 1 or delta % 2 == 0:
        raise ValueError(f'the window width must be a positive odd number, got {delta}')
    a, b = unit(f_j), unit(f_k)
    height, width = a.shape[-2:]
    r = delta // 2
    padded = F.pad(b, (r, r, r, r))
    inside = F.pad(torch.ones([1, 1, height, width], device=a.device, dtype=torch.bool),
                   (r, r, r, r))
    sims, masks = [], []
    for dy in range(delta):
        for dx in range(delta):
            sims.append((a * padded[:, :, dy:dy + height, dx:dx + width]).sum(1))
            masks.append(inside[:, 0, dy:dy + height, dx:dx + width])
    sims = torch.stack(sims, 1).masked_fill(~torch.stack(masks, 1), float('-inf'))
    return sims.softmax(dim=1)


def ordered_pairs(count, device=None):
    """(j, k) index tensors of every ordered pair j != k of `count` samples."""
    j, k = torch.meshgrid(torch.arange(count), torch.arange(count), indexing='ij')
    keep = j != k
    return j[keep].to(device), k[keep].to(device)


def dcc_loss(source_feats, target_feats, delta):
    """Eq. 6: for every layer (maps up to 256) and ordered pair (j, k) of the neighbourhood's
    samples, the L1 distance between the source and target window distributions, summed over
    the window, averaged over pairs and positions, summed over layers."""
    total = None
    for source, target in zip(source_feats, target_feats):
        if source.shape[-1] > MAX_RES:
            continue
        j, k = ordered_pairs(source.shape[0], source.device)
        d_s = window_distributions(source[j], source[k], delta).detach()
        d_t = window_distributions(target[j], target[k], delta)
        term = (d_t - d_s).abs().sum(1).mean()
        total = term if total is None else total + term
    return total


def sample_neighbourhood(center, count, radius, rng):
    """[1 + count, z_dim]: the centre z and `count` z drawn uniformly from the open ball of
    `radius` around it (the paper's U(z_i, r) = {z : |z - z_i| < r})."""
    z_dim = center.shape[-1]
    directions = torch.randn([count, z_dim], generator=rng, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    lengths = radius * torch.rand([count, 1], generator=rng, dtype=torch.float64) ** (1 / z_dim)
    neighbours = center.reshape(1, z_dim).to(torch.float64) + directions * lengths
    return torch.cat([center.reshape(1, z_dim), neighbours.to(center.dtype)])
