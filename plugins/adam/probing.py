"""AdAM's importance probing (AdAM_importance_probing.py, facts only): a short adaptation of the
modulations alone, then the Fisher information of what was probed.

As the official code: the source G and D get fresh modulations; base weights are frozen, the
modulations, biases and noise strengths train (the official b_vectors), and D's epilogue trains
(`final`); the loss is the plain StyleGAN2 one (non-saturating logistic, R1 every 16, path length
every 4, no augmentation) at the run's batch, lr, gamma and EMA; after the probing iterations the
Fisher is taken on the EMA copies of G and D, one (fake, real) pair at a time: G's of the
non-saturating loss of the fake, D's of the logistic loss of the pair. The probing networks are
copies: the run's G and D are untouched.
"""

import copy
import zlib

import numpy as np
import torch

from gda_core import filters
from gda_core.fisher import per_sample_fisher
from stylegan2_ada.extensions import Iteration
from stylegan2_ada.loss import StyleGAN2Loss
from stylegan2_ada.reparam import REPARAM_LAYERS, get_weight_reparam, set_weight_reparam
from stylegan2_ada.training_options import TrainingOptions
from stylegan2_ada.training_step import ema_beta, update_ema

from .layers import d_layers, g_layers
from .modulation import KernelModulation

G_REG, D_REG = 4, 16   # lazy regularisation intervals (official g_reg_every, d_reg_every)


def _seed(seed, label, index=0):
    state = np.random.SeedSequence([int(seed), zlib.crc32(label.encode()), int(index)])
    return int(state.generate_state(1, np.uint64)[0]) >> 1


def _plain_copy(net, device):
    """A copy of `net` with no plugin reparams in its layers."""
    net = copy.deepcopy(net).to(device).train().requires_grad_(False)
    for module in net.modules():
        if isinstance(module, REPARAM_LAYERS):
            set_weight_reparam(module, None)
    return net


def _modulate(networks, paths, generator):
    """Install a fresh KernelModulation on each path; returns {path: modulation}."""
    mods = {}
    for path in paths:
        net, _, sub = path.partition('.')
        layer = networks[net].get_submodule(sub)
        mods[path] = KernelModulation(layer.weight.shape, generator).to(layer.weight.device)
        set_weight_reparam(layer, mods[path])
    return mods


def _installed(networks, paths):
    return {path: get_weight_reparam(networks[path.split('.', 1)[0]].get_submodule(
        path.split('.', 1)[1])) for path in paths}


def _trainable(G, D, mods):
    """Per side: modulations, every bias and noise strength, and D's epilogue."""
    g = [p for path, m in mods.items() if path.startswith('G.') for p in m.parameters()]
    g += [p for name, p in G.named_parameters() if name.endswith(('.bias', 'noise_strength'))]
    d = [p for path, m in mods.items() if path.startswith('D.') for p in m.parameters()]
    d += [p for name, p in D.named_parameters()
          if name.endswith('.bias') or name.startswith(('b4.', 'mapping.'))]
    return dict(G=g, D=d)


def _reals(run, count, generator, device):
    """`count` target images in [-1, 1], each flipped with probability 1/2 (the official loader's
    RandomHorizontalFlip)."""
    picks = torch.randint(len(run.dataset), [count], generator=generator).tolist()
    flips = torch.rand([count], generator=generator) < 0.5
    images = [torch.as_tensor(np.asarray(run.dataset.raw_image(i))) for i in picks]
    images = [img.flip(-1) if flip else img for img, flip in zip(images, flips.tolist())]
    return torch.stack(images).to(device, torch.float32) / 127.5 - 1, picks


def _labels(run, picks, c_dim, device):
    if c_dim == 0:
        return torch.zeros([len(picks), 0], device=device)
    return torch.as_tensor(np.stack([run.dataset.raw_label(i) for i in picks]),
                           dtype=torch.float32, device=device)


def _optimizer(params, lr, interval):
    ratio = interval / (interval + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)


def _train(run, G, D, mods, iters, log):
    core, device = run.core, run.device
    batch = int(core['batch'])
    params = _trainable(G, D, mods)
    optimizers = dict(G=_optimizer(params['G'], core['lr'], G_REG),
                      D=_optimizer(params['D'], core['lr'], D_REG))
    loss = StyleGAN2Loss(G, D, r1_gamma=core['gamma'], style_mixing_prob=core['style_mixing'],
                         pl_weight=core['pl_weight'])
    G_ema, D_ema = copy.deepcopy(G).eval(), copy.deepcopy(D).eval()
    ema_pairs = [(G_ema, G), (D_ema, D)]
    ema_mods = _installed(dict(G=G_ema, D=D_ema), list(mods))
    ema_pairs += [(ema_mods[path], mods[path]) for path in mods]
    phases = [('Dmain', 'D', 1), ('Dreg', 'D', D_REG), ('Gmain', 'G', 1), ('Greg', 'G', G_REG)]
    for index in range(iters):
        rng = torch.Generator().manual_seed(_seed(run.seed, 'adam-probe', index))
        it = Iteration(index=index, cur_nimg=index * batch, batch_size=batch, device=device,
                       rng=rng, batch_gpu=batch)
        reals, picks = _reals(run, batch, rng, device)
        real_c = _labels(run, picks, D.c_dim, device)
        gen_c = _labels(run, picks, G.c_dim, device)
        for phase, side, interval in phases:
            if index % interval:
                continue
            it.phase = phase
            z = torch.randn([batch, G.z_dim], generator=rng).to(device)
            optimizers[side].zero_grad(set_to_none=True)
            for p in params[side]:
                p.requires_grad_(True)
            loss.accumulate_gradients(phase, reals, real_c, z, gen_c, gain=interval, it=it)
            for p in params[side]:
                p.requires_grad_(False)
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            optimizers[side].step()
        beta = ema_beta(TrainingOptions.from_record(core), index * batch)
        with torch.no_grad():
            for ema, live in ema_pairs:
                update_ema(ema, live, beta)
        if log and (index + 1) % max(iters // 5, 1) == 0:
            log(f'adam: probing iteration {index + 1}/{iters}')
    return G_ema, D_ema, ema_mods


def _fisher(run, G, D, mods, samples):
    """{name: Fisher} of every modulation's u and v ('<path>.u') and the ranked biases."""
    device = run.device
    units = filters.units(G, D)
    bias_names = [u.bias for u in units if u.bias is not None]
    nets = dict(G=G, D=D)
    named = {f'{path}.{part}': getattr(mod, part) for path, mod in mods.items()
             for part in ('u', 'v')}
    named.update({name: filters.qualified(nets, name) for name in bias_names})
    sides = {side: [name for name in named if name.startswith(side + '.')] for side in 'GD'}
    z_gen = torch.Generator().manual_seed(_seed(run.seed, 'adam-fisher'))
    zs = torch.randn([samples, G.z_dim], generator=z_gen)

    def objectives(index):
        rng = torch.Generator().manual_seed(_seed(run.seed, 'adam-fisher-real', index))
        real, picks = _reals(run, 1, rng, device)
        fake = G(zs[index:index + 1].to(device), _labels(run, picks, G.c_dim, device))
        c = _labels(run, picks, D.c_dim, device)
        fake_logit, real_logit = D(fake, c).reshape(-1), D(real, c).reshape(-1)
        g_loss = torch.nn.functional.softplus(-fake_logit)
        d_loss = torch.nn.functional.softplus(-real_logit) + torch.nn.functional.softplus(fake_logit)
        return [(g_loss, [named[n] for n in sides['G']]), (d_loss, [named[n] for n in sides['D']])]

    for param in named.values():
        param.requires_grad_(True)
    try:
        with torch.enable_grad():
            g_fisher, d_fisher = per_sample_fisher(objectives, samples)
    finally:
        for param in named.values():
            param.requires_grad_(False)
    result = dict(zip(sides['G'], g_fisher))
    result.update(zip(sides['D'], d_fisher))
    return {name: value.detach().cpu() for name, value in result.items()}


def probe(run, iters, samples, log=None):
    """The probed Fisher information {name: tensor} for this run's source, target and core
    options (see the module docstring)."""
    device = run.device
    G = _plain_copy(run.G_s, device)
    D = _plain_copy(run.D, device)
    generator = torch.Generator().manual_seed(_seed(run.seed, 'adam-probe-init'))
    mods = _modulate(dict(G=G, D=D), g_layers(G) + d_layers(D), generator)
    G_ema, D_ema, ema_mods = _train(run, G, D, mods, iters, log)
    return _fisher(run, G_ema, D_ema, ema_mods, samples)
