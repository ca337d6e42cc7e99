"""Read rosinality/stylegan2-pytorch checkpoints (and the CDC line's) as our NVIDIA-layout networks.

CDC, RSSA, AdAM, RICK and most few-shot papers release their source and adapted generators in this
format: a torch.save'd dict with `g`, `d`, `g_ema` state_dicts and optionally `g_optim`, `d_optim`,
`args` (an argparse.Namespace), or only `g_ema` (CDC's snapshots), `latent_avg` (files converted
from TensorFlow), extra generators such as CDC's `g_s`, `module.`-prefixed keys (DataParallel) or a
bare generator state_dict. The file is read by torch's weights-only unpickler with
argparse.Namespace as the one extra class (loader.py), so nothing in it runs.

Rosinality stores no constructor kwargs: size, style_dim, n_mlp, image channels and the channel
widths are read from the tensors' shapes; `args`, when present, must agree with them. The networks
are then rebuilt as our Generator ('skip') and Discriminator ('resnet') and every tensor is placed
by rosinality_layout's table; a tensor left over or missing is an error, never a silent drop.
Rosinality tracks no w_avg (its truncation uses a mean of w computed at run time): it is taken
from `latent_avg` when the file has one, else estimated as the mean w of 4096 z drawn with seed 0.
"""

import argparse
import re

import torch

from ..errors import UserError
from .rebuild import construct, finish, load_exact
from .rosinality_layout import (blur_kernel, discriminator_kernels, discriminator_rows, generator_kernels,
                                generator_rows, rosinality_shape, standard_widths)

NETWORK_KEYS = {'g': 'G', 'd': 'D', 'g_ema': 'G_ema'}
LR_MLP = 0.01          # rosinality's Generator(lr_mlp=0.01); train.py has no option for it
MBSTD_GROUP = 4        # Discriminator.stddev_group
W_AVG_SAMPLES, W_AVG_SEED = 4096, 0


def _strip(state):
    """A state_dict without DataParallel's `module.` prefix, or None if it is not one."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    if all(isinstance(k, str) and k.startswith('module.') for k in state):
        return {k[len('module.'):]: v for k, v in state.items()}
    return state


def kind_of(state):
    """'generator', 'discriminator' or None for one (stripped) state_dict."""
    if state is None:
        return None
    if 'input.input' in state and 'style.1.weight' in state:
        return 'generator'
    if 'final_linear.0.weight' in state and 'convs.0.0.weight' in state:
        return 'discriminator'
    return None


def is_rosinality(data):
    """Whether a torch.load result is a rosinality checkpoint (or a bare rosinality state_dict)."""
    if not isinstance(data, dict):
        return False
    if kind_of(_strip(data)) is not None:
        return True
    return any(kind_of(_strip(data.get(key))) for key in NETWORK_KEYS)


def _shape(state, key, what):
    if key not in state:
        raise UserError(f'{what}: the state_dict has no {key}, so it is not a rosinality network')
    return tuple(state[key].shape)


def _count(state, prefix, suffix, start, what):
    """How many layers `prefix.N.suffix` there are; N must run start, start + 1, ... without gaps."""
    pattern = re.escape(prefix) + r'\.(\d+)\.' + re.escape(suffix)
    found = sorted(int(m[1]) for key in state if (m := re.fullmatch(pattern, key)))
    if found != list(range(start, start + len(found))):
        raise UserError(f'{what}: its layers {prefix}.N.{suffix} are not numbered {start}, {start + 1}, ... '
                        f'(found {", ".join(map(str, found[:8]))})')
    return len(found)


def generator_architecture(state, what='g_ema'):
    """size, style_dim, n_mlp, img_channels and channel widths of a rosinality generator."""
    n_mlp = _count(state, 'style', 'weight', 1, what)
    style_dim = _shape(state, 'style.1.weight', what)[1]
    blocks = _count(state, 'to_rgbs', 'conv.weight', 0, what)
    size = 2 ** (blocks + 2)
    widths = {4: _shape(state, 'input.input', what)[1]}
    for i in range(blocks):
        widths[2 ** (i + 3)] = _shape(state, f'convs.{2 * i}.conv.weight', what)[1]
    img_channels = _shape(state, 'to_rgb1.conv.weight', what)[1]
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, img_channels=img_channels, widths=widths)


def discriminator_architecture(state, what='d'):
    """size, img_channels and channel widths of a rosinality (resnet) discriminator."""
    blocks = _count(state, 'convs', 'conv1.0.weight', 1, what)
    size = 2 ** (blocks + 2)
    fromrgb = _shape(state, 'convs.0.0.weight', what)
    widths = {size: fromrgb[0]}
    for k in range(1, blocks + 1):
        widths[size >> k] = _shape(state, f'convs.{k}.conv2.1.weight', what)[0]
    widths[4] = _shape(state, 'final_conv.0.weight', what)[0]
    return dict(size=size, img_channels=fromrgb[1], widths=widths)


def channel_multiplier(widths, size):
    """The multiplier whose rosinality table gives these widths; None when none does. Up to 32 px
    every multiplier gives the same widths: then 2, rosinality's default, is reported."""
    if size <= 32:
        return 2 if widths == standard_widths(size, 2) else None
    multiplier = widths[64] // 256
    return multiplier if multiplier >= 1 and widths == standard_widths(size, multiplier) else None


def nvidia_widths(widths, size, multiplier, what):
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == widths[res]."""
    channel_max = widths[4]
    narrower = [res for res in sorted(widths) if widths[res] < channel_max]
    if multiplier is not None:
        channel_base = 16384 * multiplier
    elif narrower:
        channel_base = widths[narrower[0]] * narrower[0]
    else:
        channel_base = channel_max * size
    if all(min(channel_base // res, channel_max) == width for res, width in widths.items()):
        return channel_base, channel_max
    text = ' '.join(f'{res}:{width}' for res, width in sorted(widths.items()))
    raise UserError(f'{what}: channel widths {text} match no channel multiplier gda can rebuild (NVIDIA\'s '
                    f'layout needs min(channel_base / resolution, channel_max), so widths may only fall '
                    f'as resolution grows; rosinality multipliers above 2 widen 64 px past 32 px)')


def _arg(args, *names):
    for name in names:
        if name in args and args[name] is not None:
            return args[name]
    return None


def check_args(args, arch, what):
    """Stored training args must describe the same network as the tensors."""
    expected = dict(size=arch['size'], latent=arch['style_dim'], n_mlp=arch['n_mlp'])
    for name, value in expected.items():
        stored = _arg(args, name)
        if isinstance(stored, int) and value is not None and stored != value:
            raise UserError(f'{what}: args.{name} is {stored} but the tensors are for {value}; the file is '
                            f'inconsistent')
    stored = _arg(args, 'channel_multiplier')
    if isinstance(stored, int) and stored != arch['channel_multiplier'] and arch['size'] > 32:
        found = arch['channel_multiplier']
        raise UserError(f'{what}: args.channel_multiplier is {stored} but the tensors\' widths are '
                        + (f'those of multiplier {found}' if found else 'those of no multiplier'))


def _fill(module, state, rows, kernels, what, extra=None):
    """Our module's state_dict from a rosinality one: every key placed, every tensor used."""
    own = module.state_dict()
    result = dict(extra or {})
    for ros, ours, kind in rows:
        if ros not in state:
            raise UserError(f'{what}: the rosinality state_dict lacks {ros} (needed for {ours})')
        tensor, target = state[ros], own[ours]
        if tuple(tensor.shape) != rosinality_shape(kind, target.shape):
            raise UserError(f'{what}: {ros} has shape {tuple(tensor.shape)}, expected '
                            f'{rosinality_shape(kind, target.shape)} for this architecture')
        result[ours] = tensor.reshape(target.shape)
    for key, up in kernels.items():
        if key in state and not torch.allclose(state[key].float(), blur_kernel(up)):
            raise UserError(f'{what}: {key} is not the [1, 3, 3, 1] blur kernel; other kernels are not supported')
    for key, tensor in own.items():
        if key.endswith('resample_filter'):
            result[key] = tensor
    used = {ros for ros, _, _ in rows} | set(kernels)
    unused = sorted(key for key in state if key not in used)
    if unused:
        raise UserError(f'{what}: rosinality tensors with no place in our network: {", ".join(unused[:6])}'
                        + (f' and {len(unused) - 6} more' if len(unused) > 6 else ''))
    return finish(load_exact(module, result, what))


def _estimate_w_avg(G):
    """Mean w over W_AVG_SAMPLES z from a fixed seed (what rosinality's mean_latent does, repeatably)."""
    gen = torch.Generator().manual_seed(W_AVG_SEED)
    z = torch.randn([W_AVG_SAMPLES, G.z_dim], generator=gen)
    with torch.no_grad():
        return torch.cat([G.mapping(chunk, None)[:, 0] for chunk in z.split(1024)]).mean(dim=0)


def build_generator(state, arch, what, latent_avg=None, lr_mlp=LR_MLP):
    """Our Generator from a rosinality generator state_dict; (module, how w_avg was obtained,
    how the noise images were obtained)."""
    G = construct('Generator', dict(
        z_dim=arch['style_dim'], c_dim=0, w_dim=arch['style_dim'], img_resolution=arch['size'],
        img_channels=arch['img_channels'],
        mapping_kwargs=dict(num_layers=arch['n_mlp'], lr_multiplier=lr_mlp),
        synthesis_kwargs=dict(channel_base=arch['channel_base'], channel_max=arch['channel_max'],
                              architecture='skip')), what=what)
    rows = generator_rows(arch['size'], arch['n_mlp'])
    noise = 'stored'
    noise_rows = [row for row in rows if row[2] == 'noise']
    if not any(row[0] in state for row in noise_rows):
        # Checkpoints of rosinality's code before noise buffers existed: draw fixed ones.
        gen = torch.Generator().manual_seed(0)
        state = dict(state)
        for ros, ours, kind in noise_rows:
            shape = G.state_dict()[ours].shape
            state[ros] = torch.randn(rosinality_shape(kind, shape), generator=gen)
        noise = 'none stored: drawn with seed 0'
    extra = {'mapping.w_avg': torch.zeros([arch['style_dim']])}
    G = _fill(G, state, rows, generator_kernels(arch['size']), what, extra)
    if latent_avg is not None:
        if latent_avg.numel() != arch['style_dim']:
            raise UserError(f'latent_avg has {latent_avg.numel()} values but {what} has style_dim '
                            f'{arch["style_dim"]}')
        G.mapping.w_avg.copy_(latent_avg.reshape(-1))
        w_avg = 'latent_avg in the file'
    else:
        G.mapping.w_avg.copy_(_estimate_w_avg(G))
        w_avg = f'estimated: mean w of {W_AVG_SAMPLES} z, seed {W_AVG_SEED}'
    return G, w_avg, noise


def build_discriminator(state, arch, what):
    D = construct('Discriminator', dict(
        c_dim=0, img_resolution=arch['size'], img_channels=arch['img_channels'], architecture='resnet',
        channel_base=arch['channel_base'], channel_max=arch['channel_max'],
        epilogue_kwargs=dict(mbstd_group_size=MBSTD_GROUP, mbstd_num_channels=1)), what=what)
    return _fill(D, state, discriminator_rows(arch['size']), discriminator_kernels(arch['size']), what)


def _plain(value):
    if isinstance(value, argparse.Namespace):
        return {key: _plain(item) for key, item in vars(value).items()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def read_rosinality(data, where='the file'):
    """Our networks (G, D, G_ema and any other generator/discriminator keys, by their own name),
    the file's other entries as plain data, and `rosinality`: the inferred architecture."""
    if kind_of(_strip(data)) is not None:
        data = {'g_ema' if kind_of(_strip(data)) == 'generator' else 'd': data}
    states = {key: _strip(value) for key, value in data.items() if kind_of(_strip(value))}
    args = _plain(data.get('args')) if isinstance(data.get('args'), (argparse.Namespace, dict)) else {}
    latent_avg = data.get('latent_avg') if isinstance(data.get('latent_avg'), torch.Tensor) else None
    lr_mlp = _arg(args, 'lr_mlp') or LR_MLP

    arch = None
    generators = sorted((key for key in states if kind_of(states[key]) == 'generator'), key=lambda k: k != 'g_ema')
    for key in generators:
        found = generator_architecture(states[key], key)
        if arch is None:
            arch = found
        elif found != arch:
            raise UserError(f'{where}: {key} and {generators[0]} are different architectures ({found["size"]} px, '
                            f'style_dim {found["style_dim"]} vs {arch["size"]} px, style_dim {arch["style_dim"]})')
    for key in [k for k in states if kind_of(states[k]) == 'discriminator']:
        found = discriminator_architecture(states[key], key)
        if arch is None:
            arch = dict(found, style_dim=None, n_mlp=None)
        elif found['size'] != arch['size']:
            raise UserError(f'{where}: {key} is for {found["size"]} px images but the generator makes '
                            f'{arch["size"]} px; they do not belong together')
        elif found['img_channels'] != arch['img_channels']:
            raise UserError(f'{where}: {key} reads {found["img_channels"]}-channel images but the generator '
                            f'makes {arch["img_channels"]}; they do not belong together')
        elif found['widths'] != arch['widths']:
            raise UserError(f'{where}: {key}\'s channel widths differ from the generator\'s; they do not '
                            f'belong together')
    arch['channel_multiplier'] = channel_multiplier(arch['widths'], arch['size'])
    hint = _arg(args, 'channel_multiplier') if arch['size'] <= 32 else None
    if arch['channel_multiplier'] is not None and isinstance(hint, int):
        arch['channel_multiplier'] = hint
    check_args(args, arch, where)
    arch['channel_base'], arch['channel_max'] = nvidia_widths(arch['widths'], arch['size'],
                                                              arch['channel_multiplier'], where)

    result = {}
    for key, value in data.items():
        if key not in states:
            result[key] = _plain(value)
    info = dict(arch, source='args and tensors' if args else 'tensors', networks={}, w_avg=None, noise=None)
    for key, state in states.items():
        name = NETWORK_KEYS.get(key, key)
        if kind_of(state) == 'generator':
            result[name], w_avg, noise = build_generator(state, arch, key, latent_avg, lr_mlp)
            info['w_avg'] = info['w_avg'] or w_avg
            info['noise'] = info['noise'] or noise
        else:
            result[name] = build_discriminator(state, arch, key)
        info['networks'][key] = name
    result['rosinality'] = info
    return result
