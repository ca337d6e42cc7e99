"""Convert original StyleGAN2 (TensorFlow) networks to ours, without TensorFlow.

A TF pickle holds (G, D, Gs) as dnnlib.tflib Network objects whose state is plain data: static
kwargs and a list of (variable name, numpy array). Constructor kwargs are translated by name, and
each of our state_dict keys is filled from one TF variable by a name pattern and a layout change:
conv kernels [k, k, in, out] -> [out, in, k, k] (transposed-conv kernels of upsampling layers are
also flipped), dense [in, out] -> [out, in], modulation bias + 1 (TF adds the 1 at run time), the
const input and noise images lose their batch axes, dlatent_avg -> w_avg. Every key must be filled
and every TF variable used (the `lod` counter excepted), so a layout we do not know is an error,
not a silently half-loaded network.
"""

import math
import re

import numpy as np
import torch

from ..errors import UserError
from .rebuild import construct, finish, load_exact
from .safe_pickle import TFNetwork

# (our kwarg, TF static kwarg, default when absent or None). A nested name 'a.b' goes into a['b'].
_G_KWARGS = [
    ('z_dim', 'latent_size', 512),
    ('c_dim', 'label_size', 0),
    ('w_dim', 'dlatent_size', 512),
    ('img_resolution', 'resolution', 1024),
    ('img_channels', 'num_channels', 3),
    ('mapping_kwargs.num_layers', 'mapping_layers', 8),
    ('mapping_kwargs.embed_features', 'label_fmaps', None),
    ('mapping_kwargs.layer_features', 'mapping_fmaps', None),
    ('mapping_kwargs.activation', 'mapping_nonlinearity', 'lrelu'),
    ('mapping_kwargs.lr_multiplier', 'mapping_lrmul', 0.01),
    ('mapping_kwargs.w_avg_beta', 'w_avg_beta', 0.995),
    ('synthesis_kwargs.channel_base', 'fmap_base', 16384),
    ('synthesis_kwargs.channel_max', 'fmap_max', 512),
    ('synthesis_kwargs.num_fp16_res', 'num_fp16_res', 0),
    ('synthesis_kwargs.conv_clamp', 'conv_clamp', None),
    ('synthesis_kwargs.architecture', 'architecture', 'skip'),
    ('synthesis_kwargs.resample_filter', 'resample_kernel', [1, 3, 3, 1]),
    ('synthesis_kwargs.use_noise', 'use_noise', True),
    ('synthesis_kwargs.activation', 'nonlinearity', 'lrelu'),
]
_D_KWARGS = [
    ('c_dim', 'label_size', 0),
    ('img_resolution', 'resolution', 1024),
    ('img_channels', 'num_channels', 3),
    ('architecture', 'architecture', 'resnet'),
    ('channel_base', 'fmap_base', 16384),
    ('channel_max', 'fmap_max', 512),
    ('num_fp16_res', 'num_fp16_res', 0),
    ('conv_clamp', 'conv_clamp', None),
    ('cmap_dim', 'mapping_fmaps', None),
    ('block_kwargs.activation', 'nonlinearity', 'lrelu'),
    ('block_kwargs.resample_filter', 'resample_kernel', [1, 3, 3, 1]),
    ('block_kwargs.freeze_layers', 'freeze_layers', 0),
    ('mapping_kwargs.num_layers', 'mapping_layers', 0),
    ('mapping_kwargs.embed_features', 'mapping_fmaps', None),
    ('mapping_kwargs.layer_features', 'mapping_fmaps', None),
    ('mapping_kwargs.activation', 'nonlinearity', 'lrelu'),
    ('mapping_kwargs.lr_multiplier', 'mapping_lrmul', 0.1),
    ('epilogue_kwargs.mbstd_group_size', 'mbstd_group_size', None),
    ('epilogue_kwargs.mbstd_num_channels', 'mbstd_num_features', 1),
    ('epilogue_kwargs.activation', 'nonlinearity', 'lrelu'),
]
# Run-time options stored beside the architecture; they do not change the weights' layout.
_IGNORED_KWARGS = {'truncation_psi', 'truncation_cutoff', 'style_mixing_prob', 'structure',
                   'dlatent_avg_beta', 'randomize_noise', 'fused_modconv', 'dtype', 'is_template_graph',
                   'components', 'conditioning', 'impl'}


def _kwargs(network, table, what):
    if not isinstance(network.version, int) or network.version < 4:
        raise UserError(f'{what}: TensorFlow network version {network.version!r} is too old (need 4 or 5)')
    tf_kwargs = network.static_kwargs
    unknown = sorted(set(tf_kwargs) - {tf for _, tf, _ in table} - _IGNORED_KWARGS)
    if unknown:
        raise UserError(f'{what}: unknown TensorFlow kwargs {", ".join(unknown)}; this layout cannot be converted')
    kwargs = {}
    for ours, tf, default in table:
        value = tf_kwargs.get(tf)
        value = default if value is None else value
        if tf == 'fmap_base':
            value *= 2  # TF: fmap_base / 2**(log2(res) - 1) channels; ours: channel_base / res
        if ours == 'mapping_kwargs.w_avg_beta' and tf_kwargs.get(tf, 0) is None:
            value = 1  # TF None means 'no tracking'; ours spells that beta = 1
        outer, _, inner = ours.partition('.')
        if inner:
            kwargs.setdefault(outer, {})[inner] = value
        else:
            kwargs[outer] = value
    return kwargs


def _variables(network, prefix=''):
    """All variables of a network and its components, named 'component/…/name'."""
    found = {}
    for name, value in network.variables:
        found[prefix + name] = np.asarray(value)
    for name, component in network.components.items():
        if not isinstance(component, TFNetwork):
            raise UserError(f'TensorFlow component {prefix}{name} is not a network')
        found.update(_variables(component, f'{prefix}{name}/'))
    return found


def _conv(x):
    return x.transpose(3, 2, 0, 1)


def _conv_flipped(x):
    return x[::-1, ::-1].transpose(3, 2, 0, 1)


def _dense(x):
    return x.transpose()


def _same(x):
    return x


def _noise_index(res, layer):
    return 2 * int(math.log2(int(res))) - (5 if layer == 'conv0' else 4)


_TF_LAYER = {'conv0': 'Conv0_up', 'conv1': 'Conv1'}
_MOD = [('weight', 'weight', None), ('bias', 'bias', _same), ('noise_strength', 'noise_strength', _same),
        ('affine.weight', 'mod_weight', _dense), ('affine.bias', 'mod_bias', lambda x: x + 1)]


def _g_rules(key):
    """(TF variable name, transform) for one of our Generator keys, or None when it has no TF source."""
    if key == 'mapping.w_avg':
        return 'dlatent_avg', _same
    if m := re.fullmatch(r'mapping\.(fc(\d+)|embed)\.(weight|bias)', key):
        scope = f'Dense{m[2]}' if m[2] is not None else 'LabelEmbed'
        return f'mapping/{scope}/{m[3]}', _dense if m[3] == 'weight' else _same
    if key == 'synthesis.b4.const':
        return 'synthesis/4x4/Const/const', lambda x: x[0]
    if m := re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1)\.noise_const', key):
        return f'synthesis/noise{_noise_index(m[1], m[2])}', lambda x: x[0, 0]
    if m := re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)', key):
        res, layer, rest = m.groups()
        scope = 'ToRGB' if layer == 'torgb' else ('Conv' if res == '4' else _TF_LAYER[layer])
        for ours, tf, transform in _MOD:
            if rest == ours:
                if transform is None:
                    transform = _conv_flipped if layer == 'conv0' else _conv
                return f'synthesis/{res}x{res}/{scope}/{tf}', transform
    if m := re.fullmatch(r'synthesis\.b(\d+)\.skip\.weight', key):
        return f'synthesis/{m[1]}x{m[1]}/Skip/weight', _conv_flipped
    return None


def _d_rules(key):
    """(TF variable name, transform) for one of our Discriminator keys, or None."""
    if m := re.fullmatch(r'b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)', key):
        res, layer, kind = m.groups()
        scope = {'fromrgb': 'FromRGB', 'conv0': 'Conv0', 'conv1': 'Conv1_down', 'skip': 'Skip'}[layer]
        return f'{res}x{res}/{scope}/{kind}', _conv if kind == 'weight' else _same
    if m := re.fullmatch(r'b4\.(conv|fc|out)\.(weight|bias)', key):
        scope = {'conv': '4x4/Conv', 'fc': '4x4/Dense0', 'out': 'Output'}[m[1]]
        return f'{scope}/{m[2]}', (_conv if m[1] == 'conv' else _dense) if m[2] == 'weight' else _same
    if m := re.fullmatch(r'mapping\.(fc(\d+)|embed)\.(weight|bias)', key):
        scope = f'Mapping{m[2]}' if m[2] is not None else 'LabelEmbed'
        return f'{scope}/{m[3]}', _dense if m[3] == 'weight' else _same
    return None


def _convert(network, class_name, table, rules, what):
    if not isinstance(network, TFNetwork):
        raise UserError(f'{what}: expected a TensorFlow network, found {type(network).__name__}')
    kwargs = _kwargs(network, table, what)
    module = construct(class_name, kwargs, what=what)
    variables = _variables(network)
    own = module.state_dict()
    state, used = {}, set()
    for key, tensor in own.items():
        if key.endswith('resample_filter'):
            state[key] = tensor  # a fixed filter built from the kwargs; TF stores none
            continue
        rule = rules(key)
        if rule is None:
            raise UserError(f'{what}: no TensorFlow counterpart is known for {key}')
        name, transform = rule
        if name not in variables:
            raise UserError(f'{what}: the TensorFlow network lacks {name} (needed for {key})')
        state[key] = torch.from_numpy(np.array(transform(variables[name]), order='C')).to(tensor.dtype)
        used.add(name)
    unused = sorted(name for name in variables if name not in used and name.split('/')[-1] != 'lod')
    if unused:
        raise UserError(f'{what}: TensorFlow variables with no place in our network: {", ".join(unused[:6])}'
                        + (f' and {len(unused) - 6} more' if len(unused) > 6 else ''))
    return finish(load_exact(module, state, what))


def convert_generator(network, what='G'):
    """Our Generator from a TF G or Gs network."""
    return _convert(network, 'Generator', _G_KWARGS, _g_rules, what)


def convert_discriminator(network, what='D'):
    """Our Discriminator from a TF D network."""
    return _convert(network, 'Discriminator', _D_KWARGS, _d_rules, what)


def is_tf_pickle(data):
    return isinstance(data, tuple) and len(data) == 3 and all(isinstance(net, TFNetwork) for net in data)


def convert_tf_pickle(data):
    """NVIDIA's (G, D, Gs) TF tuple -> dict(G, D, G_ema)."""
    tf_G, tf_D, tf_Gs = data
    return dict(G=convert_generator(tf_G, 'G'), D=convert_discriminator(tf_D, 'D'),
                G_ema=convert_generator(tf_Gs, 'G_ema'))
