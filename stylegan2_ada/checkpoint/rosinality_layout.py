"""Where each tensor of a rosinality/stylegan2-pytorch network sits in our NVIDIA-layout networks.

One table per network, used in both directions (reading and `gda export --format rosinality`), so
the two can never disagree. Each row is (rosinality key, our key, kind); the kind says how the
shapes differ, nothing else does: rosinality keeps a leading 1 on modulated-conv weights
([1, O, I, k, k]), the const input ([1, C, 4, 4]) and noise images ([1, 1, R, R]), stores noise
strengths as [1] and the ToRGB bias as [1, 3, 1, 1]. Values are the same numbers in both layouts:
both store weights unscaled (equalised learning rate applied at run time with the same gains, the
mapping's weights divided by the same lr multiplier), the affine/modulation bias includes its 1,
the up-sampling convs' kernels are stored unflipped by both (transposed convolution), and the
resnet D's skip/conv gains of sqrt(1/2) are applied at run time by both.

Rosinality also stores its blur kernels as buffers (up-sampling convs, ToRGB up-sampling, D's
down-sampling convs); they have no tensor in our layout (ours is built from `resample_filter`), so
they are checked against the [1, 3, 3, 1] kernel on reading and written on export.

Rosinality's channel widths: 512 up to 32 px, then 256, 128, 64, 32, 16 times the channel
multiplier at 64 ... 1024 px; NVIDIA's are min(channel_base / res, channel_max), the same for
channel_base = 16384 * multiplier and channel_max = 512 when the multiplier is 1 or 2.
"""

import math

import torch

BLUR = (1, 3, 3, 1)
SHAPES = {
    'same': lambda shape: tuple(shape),
    'modconv': lambda shape: (1, *shape),
    'const': lambda shape: (1, *shape),
    'noise': lambda shape: (1, 1, *shape),
    'scalar': lambda shape: (1,),
    'rgb_bias': lambda shape: (1, shape[0], 1, 1),
}


def blur_kernel(up):
    """Rosinality's stored 2-D blur kernel: outer product, unit sum, times 4 when up-sampling."""
    k = torch.tensor(BLUR, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum() * (4 if up else 1)


def rosinality_shape(kind, our_shape):
    return SHAPES[kind](our_shape)


def standard_widths(size, multiplier):
    """Rosinality's channel table for resolutions 4 ... size."""
    return {2 ** i: 512 if 2 ** i <= 32 else (16384 * multiplier) // 2 ** i
            for i in range(2, int(math.log2(size)) + 1)}


def _modconv(ros, ours, kind_weight='modconv'):
    return [(f'{ros}.conv.weight', f'{ours}.weight', kind_weight),
            (f'{ros}.conv.modulation.weight', f'{ours}.affine.weight', 'same'),
            (f'{ros}.conv.modulation.bias', f'{ours}.affine.bias', 'same')]


def _styled_conv(ros, ours):
    return _modconv(ros, ours) + [(f'{ros}.noise.weight', f'{ours}.noise_strength', 'scalar'),
                                  (f'{ros}.activate.bias', f'{ours}.bias', 'same')]


def _to_rgb(ros, ours):
    return [(f'{ros}.bias', f'{ours}.bias', 'rgb_bias')] + _modconv(ros, ours)


def generator_rows(size, n_mlp):
    """(rosinality key, our key, kind) for every weight of a generator, in rosinality's order.

    Layer order in rosinality: conv1 and to_rgb1 at 4 px, then per resolution r = 8 ... size the
    up-sampling conv convs[2i], the conv convs[2i+1] and to_rgbs[i]; noises.noise_0 is 4 px,
    noise_{2i+1} and noise_{2i+2} belong to convs[2i] and convs[2i+1].
    """
    rows = []
    for i in range(n_mlp):
        rows += [(f'style.{i + 1}.weight', f'mapping.fc{i}.weight', 'same'),
                 (f'style.{i + 1}.bias', f'mapping.fc{i}.bias', 'same')]
    rows.append(('input.input', 'synthesis.b4.const', 'const'))
    rows += _styled_conv('conv1', 'synthesis.b4.conv1')
    rows += _to_rgb('to_rgb1', 'synthesis.b4.torgb')
    resolutions = [2 ** i for i in range(3, int(math.log2(size)) + 1)]
    for i, res in enumerate(resolutions):
        rows += _styled_conv(f'convs.{2 * i}', f'synthesis.b{res}.conv0')
        rows += _styled_conv(f'convs.{2 * i + 1}', f'synthesis.b{res}.conv1')
    for i, res in enumerate(resolutions):
        rows += _to_rgb(f'to_rgbs.{i}', f'synthesis.b{res}.torgb')
    rows.append(('noises.noise_0', 'synthesis.b4.conv1.noise_const', 'noise'))
    for i, res in enumerate(resolutions):
        rows += [(f'noises.noise_{2 * i + 1}', f'synthesis.b{res}.conv0.noise_const', 'noise'),
                 (f'noises.noise_{2 * i + 2}', f'synthesis.b{res}.conv1.noise_const', 'noise')]
    return rows


def generator_kernels(size):
    """{rosinality key: up-sampling?} for the generator's stored blur kernels."""
    count = int(math.log2(size)) - 2
    kernels = {f'convs.{2 * i}.conv.blur.kernel': True for i in range(count)}
    kernels.update({f'to_rgbs.{i}.upsample.kernel': True for i in range(count)})
    return kernels


def discriminator_rows(size):
    """(rosinality key, our key, kind) for every weight of a resnet discriminator."""
    rows = [('convs.0.0.weight', f'b{size}.fromrgb.weight', 'same'),
            ('convs.0.1.bias', f'b{size}.fromrgb.bias', 'same')]
    for k, res in enumerate([2 ** i for i in range(int(math.log2(size)), 2, -1)], start=1):
        rows += [(f'convs.{k}.conv1.0.weight', f'b{res}.conv0.weight', 'same'),
                 (f'convs.{k}.conv1.1.bias', f'b{res}.conv0.bias', 'same'),
                 (f'convs.{k}.conv2.1.weight', f'b{res}.conv1.weight', 'same'),
                 (f'convs.{k}.conv2.2.bias', f'b{res}.conv1.bias', 'same'),
                 (f'convs.{k}.skip.1.weight', f'b{res}.skip.weight', 'same')]
    rows += [('final_conv.0.weight', 'b4.conv.weight', 'same'), ('final_conv.1.bias', 'b4.conv.bias', 'same'),
             ('final_linear.0.weight', 'b4.fc.weight', 'same'), ('final_linear.0.bias', 'b4.fc.bias', 'same'),
             ('final_linear.1.weight', 'b4.out.weight', 'same'), ('final_linear.1.bias', 'b4.out.bias', 'same')]
    return rows


def discriminator_kernels(size):
    """{rosinality key: up-sampling?} for the discriminator's stored blur kernels."""
    count = int(math.log2(size)) - 2
    kernels = {}
    for k in range(1, count + 1):
        kernels[f'convs.{k}.conv2.0.kernel'] = False
        kernels[f'convs.{k}.skip.0.kernel'] = False
    return kernels


def ordered(rows, kernels):
    """Rows and kernels merged into rosinality's state_dict order: a module's own tensors come
    before its children's, so an up-sampling conv's blur kernel follows its weight, ToRGB's
    follows its bias, and a down-sampling ConvLayer's blur (child 0) precedes its conv (child 1)."""
    position = {ros: index for index, (ros, _, _) in reversed(list(enumerate(rows)))}
    items = [(position[ros], 1, ros, (ours, kind)) for ros, ours, kind in rows]
    for key in kernels:
        if key.endswith('.conv.blur.kernel'):
            anchor, after = key[:-len('.blur.kernel')] + '.weight', 2
        elif key.endswith('.upsample.kernel'):
            anchor, after = key[:-len('.upsample.kernel')] + '.bias', 2
        else:
            anchor, after = key[:-len('.0.kernel')] + '.1.weight', 0
        items.append((position[anchor], after, key, None))
    items.sort(key=lambda item: item[:2])
    return [(key, row) for _, _, key, row in items]
