"""A minimal re-implementation of rosinality/stylegan2-pytorch's networks, for tests only.

Written from the facts of rosinality's model.py (module and attribute names, so state_dict keys and
their order come out as in its checkpoints, and the forward formulas), in plain torch and
independent of gda's networks and converter, so comparing the two checks the conversion:

- mapping: PixelNorm, then n_mlp EqualLinear layers, weights stored divided by lr_mul (0.01) and
  scaled by lr_mul / sqrt(in) at run time, bias times lr_mul, leaky ReLU 0.2 times sqrt(2);
- const input [1, C, 4, 4]; StyledConv = ModulatedConv2d (weight [1, O, I, k, k] scaled by
  1 / sqrt(I k k), modulation EqualLinear with bias 1, demodulation eps 1e-8), then
  noise * NoiseInjection.weight, then FusedLeakyReLU (bias, leaky 0.2, times sqrt(2));
- up-sampling convs: transposed conv, stride 2, then blur by the [1,3,3,1] kernel times 4, pad (1, 1);
- ToRGB: modulated 1x1 conv without demodulation plus bias [1, 3, 1, 1]; the skip image is
  up-sampled by the kernel times 4, pad (2, 1), and added;
- D: ConvLayer = [blur pad (2, 2) or (1, 1)], EqualConv2d (stride 2 when down-sampling),
  FusedLeakyReLU; ResBlock = (conv2(conv1(x)) + skip(x)) / sqrt(2); minibatch stddev (group
  min(N, 4), one feature) appended, final_conv, final_linear (EqualLinear fused_lrelu, EqualLinear).

`channels` may replace rosinality's width table so test networks can be tiny.
"""

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2)


def widths(size, channel_multiplier=2):
    return {2 ** i: 512 if 2 ** i <= 32 else 16384 * channel_multiplier // 2 ** i
            for i in range(2, int(math.log2(size)) + 1)}


def kernel2d(up=False):
    k = torch.tensor([1., 3., 3., 1.])
    k = k[:, None] * k[None, :]
    return k / k.sum() * (4 if up else 1)


def upfirdn(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero-stuff by `up`, pad, convolve with `kernel` (true convolution), keep every `down`-th."""
    n, c, h, w = x.shape
    if up > 1:
        stuffed = x.new_zeros([n, c, h * up, w * up])
        stuffed[:, :, ::up, ::up] = x
        x = stuffed
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.flip([0, 1])[None, None].repeat(c, 1, 1, 1).to(x.dtype)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def lrelu(x, bias):
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.reshape(shape), 0.2) * SQRT2


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_dim], float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale)
        if self.activation:
            return lrelu(out, self.bias * self.lr_mul)
        return out + self.bias * self.lr_mul


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return lrelu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, pad, up=False):
        super().__init__()
        self.register_buffer('kernel', kernel2d(up))
        self.pad = pad

    def forward(self, x):
        return upfirdn(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('kernel', kernel2d(up=True))

    def forward(self, x):
        return upfirdn(x, self.kernel, up=2, pad=(2, 1))


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            self.blur = Blur(pad=(1, 1), up=True)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x, style):
        n, c, h, w = x.shape
        _, o, i, k, _ = self.weight.shape
        weight = self.scale * self.weight * self.modulation(style).reshape(n, 1, i, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum([2, 3, 4]) + 1e-8).reshape(n, o, 1, 1, 1)
        x = x.reshape(1, n * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * i, o, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            return self.blur(out.reshape(n, o, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(n * o, i, k, k), padding=self.padding, groups=n)
        return out.reshape(n, o, *out.shape[2:])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, channel_multiplier=2, lr_mlp=0.01, channels=None):
        super().__init__()
        ch = channels or widths(size, channel_multiplier)
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation='fused_lrelu') for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for index in range(self.num_layers):
            res = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f'noise_{index}', torch.randn(1, 1, res, res))
        previous = ch[4]
        for i in range(3, self.log_size + 1):
            self.convs.append(StyledConv(previous, ch[2 ** i], style_dim, upsample=True))
            self.convs.append(StyledConv(ch[2 ** i], ch[2 ** i], style_dim))
            self.to_rgbs.append(ToRGB(ch[2 ** i], style_dim))
            previous = ch[2 ** i]
        self.n_latent = self.log_size * 2 - 2

    def mean_latent(self, count, seed=0):
        z = torch.randn(count, self.style_dim, generator=torch.Generator().manual_seed(seed))
        return self.style(z).mean(0, keepdim=True)

    def forward(self, z, truncation=1, truncation_latent=None):
        """Image for z with the stored noise buffers (randomize_noise=False)."""
        style = self.style(z)
        if truncation < 1:
            style = truncation_latent + truncation * (style - truncation_latent)
        latent = style.unsqueeze(1).repeat(1, self.n_latent, 1)
        noise = [getattr(self.noises, f'noise_{i}') for i in range(self.num_layers)]
        out = self.input.input.repeat(len(z), 1, 1, 1)
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for j, to_rgb in enumerate(self.to_rgbs):
            i = 2 * j + 1
            out = self.convs[2 * j](out, latent[:, i], noise[i])
            out = self.convs[2 * j + 1](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip


class EqualConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, bias=True, activate=True):
        layers = []
        if downsample:
            p = 2 + kernel_size - 1
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel_size // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class Discriminator(nn.Module):
    def __init__(self, size, channel_multiplier=2, channels=None):
        super().__init__()
        ch = channels or widths(size, channel_multiplier)
        log_size = int(math.log2(size))
        convs = [ConvLayer(3, ch[size], 1)]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(ch[2 ** i], ch[2 ** (i - 1)]))
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation='fused_lrelu'),
                                          EqualLinear(ch[4], 1))

    def forward(self, img):
        out = self.convs(img)
        n, c, h, w = out.shape
        group = min(n, 4)
        std = out.reshape(group, -1, 1, c, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, std.repeat(group, 1, h, w)], 1)
        out = self.final_conv(out)
        return self.final_linear(out.reshape(n, -1))


@torch.no_grad()
def randomize(module, seed):
    """Every parameter drawn at random (biases and noise strengths too, so a misplaced one shows);
    mapping weights keep rosinality's 1 / lr_mul storage scale, ToRGB weights are scaled so that
    images stay within about [-2, 2], as a trained generator's do."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        value = torch.randn(param.shape, generator=gen)
        if name.startswith('style.') and name.endswith('.weight'):
            value = value / 0.01
        elif name.endswith('modulation.bias'):
            value = 1 + 0.2 * value
        elif name.endswith(('bias', 'noise.weight')):
            value = 0.2 * value
        if name.startswith('to_rgb') and name.endswith('conv.weight'):
            value = 0.1 * value
        param.copy_(value)
    for name, buffer in module.named_buffers():
        if name.startswith('noises.'):
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
    return module.eval().requires_grad_(False)


def networks(size=32, style_dim=32, n_mlp=2, channels=None, channel_multiplier=2, seed=0):
    """(g, d, g_ema) with random weights; g_ema differs from g."""
    g = randomize(Generator(size, style_dim, n_mlp, channel_multiplier, channels=channels), seed)
    g_ema = randomize(Generator(size, style_dim, n_mlp, channel_multiplier, channels=channels), seed + 1)
    d = randomize(Discriminator(size, channel_multiplier, channels=channels), seed + 2)
    return g, d, g_ema


def checkpoint(g, d, g_ema, optim=True, **args):
    """The dict rosinality's train.py saves: g, d, g_ema, g_optim, d_optim and args (a Namespace
    of its options; `args` adds or replaces some)."""
    data = dict(g=g.state_dict(), d=d.state_dict(), g_ema=g_ema.state_dict())
    if optim:
        for key, net in (('g_optim', g), ('d_optim', d)):
            params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
            data[key] = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99)).state_dict()
    options = dict(size=g.size, latent=g.style_dim, n_mlp=len(g.style) - 1, iter=800000, batch=16,
                   r1=10.0, path='lmdb', ckpt=None, augment=False)
    options.update(args)
    data['args'] = argparse.Namespace(**options)
    return data
