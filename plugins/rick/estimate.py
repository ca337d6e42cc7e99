"""RICK's Fisher estimate (facts from train_dynamic_update_prune.py): one (fake, real) pair at a
time, G's Fisher from the non-saturating loss of the fake through G_ema, D's from the logistic
loss of the pair, over --rick-fisher-batches x --batch pairs. The latents are the same at every
estimate (the official fixed noise files), the real images are drawn per estimate.
"""

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from gda_core import filters
from gda_core.fisher import per_sample_fisher


def _seed(seed, *labels):
    words = [int(seed)] + [zlib.crc32(str(label).encode()) for label in labels]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) >> 1


def _real(run, generator):
    """One target image in [-1, 1], flipped with probability 1/2 (the official loader's flip)."""
    index = int(torch.randint(len(run.dataset), [1], generator=generator))
    image = torch.as_tensor(np.asarray(run.dataset.raw_image(index)))
    if bool(torch.rand([1], generator=generator) < 0.5):
        image = image.flip(-1)
    return image[None].to(run.device, torch.float32) / 127.5 - 1, index


def _label(run, index, c_dim):
    if c_dim == 0:
        return torch.zeros([1, 0], device=run.device)
    return torch.as_tensor(run.dataset.raw_label(index), dtype=torch.float32,
                           device=run.device).reshape(1, -1)


def fisher(run, units, samples, iteration):
    """{qualified parameter name: Fisher} for the units' weights and biases: G's on G_ema, D's
    on D (gda keeps no EMA of D)."""
    networks = dict(G=run.G_ema, D=run.D)
    names = {side: [n for u in units if u.network == side for n in (u.weight, u.bias) if n]
             for side in 'GD'}
    params = {n: filters.qualified(networks, n) for side in 'GD' for n in names[side]}
    zs = torch.randn([samples, run.G_ema.z_dim],
                     generator=torch.Generator().manual_seed(_seed(run.seed, 'rick-z')))
    reals = torch.Generator().manual_seed(_seed(run.seed, 'rick-real', iteration))

    def objectives(index):
        real, picked = _real(run, reals)
        fake = run.G_ema(zs[index:index + 1].to(run.device), _label(run, picked, run.G_ema.c_dim))
        c = _label(run, picked, run.D.c_dim)
        fake_logit, real_logit = run.D(fake, c).reshape(-1), run.D(real, c).reshape(-1)
        g_loss = F.softplus(-fake_logit)
        d_loss = F.softplus(-real_logit) + F.softplus(fake_logit)
        return [(g_loss, [params[n] for n in names['G']]),
                (d_loss, [params[n] for n in names['D']])]

    flags = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            g_fisher, d_fisher = per_sample_fisher(objectives, samples)
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
    return dict(zip(names['G'], g_fisher), **dict(zip(names['D'], d_fisher)))
