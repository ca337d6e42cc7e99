"""Write our networks as a rosinality/stylegan2-pytorch checkpoint, for the papers' own code.

The inverse of rosinality.py by the same table (rosinality_layout.py): {g_ema, g, d, latent_avg},
what rosinality's train.py and the CDC line read (`g` so their fine-tuning scripts start from it,
`latent_avg` as rosinality's convert_weight.py writes it, so truncation uses our tracked w_avg).
No `args` is written: an argparse.Namespace would stop torch >= 2.6's default weights-only load in
their scripts. Only what rosinality's networks can express is written; anything else is refused
with the reason, and harmless run-time differences are returned as notes.
"""

import torch

from ..errors import UserError
from .atomic import atomic_write
from .rosinality import LR_MLP, MBSTD_GROUP, channel_multiplier
from .rosinality_layout import (BLUR, blur_kernel, discriminator_kernels, discriminator_rows, generator_kernels,
                                generator_rows, ordered, rosinality_shape)


def _kwargs(module):
    return getattr(module, 'init_kwargs', {}) or {}


def _filter_is_standard(value):
    return value is None or [float(x) for x in value] == [float(x) for x in BLUR]


def check_generator(G):
    """Refuse a generator rosinality's Generator cannot express; notes on what only differs at run time."""
    if type(G).__name__ != 'Generator':
        raise UserError(f'cannot write a {type(G).__name__} as a rosinality generator')
    kwargs = _kwargs(G)
    mapping, synthesis = kwargs.get('mapping_kwargs', {}), kwargs.get('synthesis_kwargs', {})
    problems = []
    if G.c_dim:
        problems.append(f'it is conditional (c_dim {G.c_dim}); rosinality has no labels')
    if G.z_dim != G.w_dim or mapping.get('layer_features') not in (None, G.w_dim):
        problems.append('its z, w and mapping widths differ; rosinality uses style_dim for all three')
    if synthesis.get('architecture', 'skip') != 'skip':
        problems.append(f'its architecture is {synthesis["architecture"]!r}; rosinality\'s is skip')
    if G.img_channels != 3:
        problems.append(f'it makes {G.img_channels}-channel images; rosinality\'s ToRGB makes 3')
    if not synthesis.get('use_noise', True):
        problems.append('it has no noise inputs')
    if any(options.get('activation', 'lrelu') != 'lrelu' for options in (mapping, synthesis)):
        problems.append('it uses an activation other than leaky ReLU')
    if not _filter_is_standard(synthesis.get('resample_filter')):
        problems.append('its resampling filter is not [1, 3, 3, 1]')
    if problems:
        raise UserError('cannot write this generator in rosinality\'s layout: ' + '; '.join(problems))
    notes = []
    if synthesis.get('conv_clamp') is not None:
        notes.append(f'conv_clamp {synthesis["conv_clamp"]} dropped (rosinality does not clamp; images differ '
                     f'only where activations pass it)')
    return notes


def check_discriminator(D):
    if type(D).__name__ != 'Discriminator':
        raise UserError(f'cannot write a {type(D).__name__} as a rosinality discriminator')
    kwargs = _kwargs(D)
    epilogue, block = kwargs.get('epilogue_kwargs', {}), kwargs.get('block_kwargs', {})
    problems = []
    if D.c_dim:
        problems.append(f'it is conditional (c_dim {D.c_dim})')
    if kwargs.get('architecture', 'resnet') != 'resnet':
        problems.append(f'its architecture is {kwargs["architecture"]!r}; rosinality\'s is resnet')
    if D.img_channels != 3:
        problems.append(f'it reads {D.img_channels}-channel images')
    if epilogue.get('mbstd_num_channels', 1) != 1:
        problems.append('its minibatch-stddev layer has more than one feature')
    if any(options.get('activation', 'lrelu') != 'lrelu' for options in (epilogue, block)):
        problems.append('it uses an activation other than leaky ReLU')
    if not _filter_is_standard(block.get('resample_filter')):
        problems.append('its resampling filter is not [1, 3, 3, 1]')
    if problems:
        raise UserError('cannot write this discriminator in rosinality\'s layout: ' + '; '.join(problems))
    notes = []
    if epilogue.get('mbstd_group_size', 4) != MBSTD_GROUP:
        notes.append(f'minibatch-stddev group {epilogue.get("mbstd_group_size")} becomes rosinality\'s fixed 4')
    if kwargs.get('conv_clamp') is not None:
        notes.append(f'D conv_clamp {kwargs["conv_clamp"]} dropped')
    return notes


def _convert(state, rows, kernels, transform=None):
    by_key = dict(ordered(rows, kernels))
    result = {}
    for key, row in by_key.items():
        if row is None:
            result[key] = blur_kernel(kernels[key])
            continue
        ours, kind = row
        tensor = state[ours].detach().to('cpu', torch.float32)
        if transform is not None:
            tensor = transform(ours, tensor)
        result[key] = tensor.reshape(rosinality_shape(kind, tensor.shape)).clone()
    return result


def generator_state(G):
    """A rosinality generator state_dict with G's weights. A mapping lr multiplier other than
    rosinality's 0.01 is folded into the stored mapping weights and biases (same effective ones)."""
    lr = _kwargs(G).get('mapping_kwargs', {}).get('lr_multiplier', 0.01)
    factor = lr / LR_MLP

    def fold(key, tensor):
        return tensor * factor if key.startswith('mapping.fc') and factor != 1 else tensor

    return _convert(G.state_dict(), generator_rows(G.img_resolution, G.mapping.num_layers),
                    generator_kernels(G.img_resolution), fold)


def discriminator_state(D):
    return _convert(D.state_dict(), discriminator_rows(D.img_resolution), discriminator_kernels(D.img_resolution))


def widths_note(G):
    """A note when rosinality's own Generator(size, ..., channel_multiplier) cannot be built with
    these widths (tiny or pruned networks): its width table is fixed."""
    state = G.state_dict()
    widths = {res: int(state[f'synthesis.b{res}.conv1.weight'].shape[0]) for res in G.synthesis.block_resolutions}
    if channel_multiplier(widths, G.img_resolution) is not None:
        return []
    text = ' '.join(f'{res}:{width}' for res, width in sorted(widths.items()))
    return [f'channel widths {text} are no channel multiplier\'s: rosinality\'s own model.py loads this file '
            f'only with its channel table edited (gda reads it as is)']


def save_rosinality(path, G_ema, D=None, G=None):
    """Write {g_ema, g, d, latent_avg} (g from G, else G_ema's weights; d only if D is given);
    returns notes on what only differs at run time."""
    notes = check_generator(G_ema) + widths_note(G_ema)
    data = {'g_ema': generator_state(G_ema)}
    if G is not None:
        check_generator(G)
        if G.img_resolution != G_ema.img_resolution or G.w_dim != G_ema.w_dim:
            raise UserError('G and G_ema are different architectures')
        data['g'] = generator_state(G)
    else:
        data['g'] = {key: value.clone() for key, value in data['g_ema'].items()}
    if D is not None:
        notes += check_discriminator(D)
        if D.img_resolution != G_ema.img_resolution:
            raise UserError(f'D is for {D.img_resolution} px images, G_ema makes {G_ema.img_resolution} px')
        data['d'] = discriminator_state(D)
    data['latent_avg'] = G_ema.mapping.w_avg.detach().to('cpu', torch.float32).clone()
    with atomic_write(path) as file:
        torch.save(data, file)
    return notes
