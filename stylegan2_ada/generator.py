"""StyleGAN2 generator: mapping network + synthesis network ('skip', 'resnet' or 'orig').

Same constructor kwargs, state_dict keys and call signatures as NVIDIA's, plus an explicit feature
API: pass `return_features=True` (or a list of names) and the synthesis network also returns a dict
of fp32 feature maps, in layer order: `b4.conv1`, `b4`, then `b{r}.conv0`, `b{r}.conv1`, `b{r}` for
each resolution r (`b{r}` is the block's output). The plain forward only pays a None check.
"""

import numpy as np
import torch

from .layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork, modulated_conv2d
from .layers import _check_shape
from . import precision
from .ops import bias_act, upfirdn2d
from .persistence import persistent_class

NOISE_MODES = ('random', 'const', 'none')


class FeatureRecorder:
    """Collects requested feature maps during one forward pass, cast to fp32."""

    def __init__(self, names=None):
        self.names = None if names is None else set(names)
        self.features = {}

    def __call__(self, name, x):
        if self.names is None or name in self.names:
            self.features[name] = x.float()


def make_recorder(return_features, available):
    """A FeatureRecorder for `return_features` (True, or an iterable of names), else None."""
    if return_features is False or return_features is None:
        return None
    if return_features is True:
        return FeatureRecorder()
    names = [return_features] if isinstance(return_features, str) else list(return_features)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f'unknown feature name(s) {unknown}; available: {list(available)}')
    return FeatureRecorder(names)


@persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution + noise + bias + leaky ReLU (optionally upsampling by 2)."""
    _weight_reparam = None   # set by reparam.set_weight_reparam; never in the state_dict

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1,
                 use_noise=True, activation='lrelu', resample_filter=[1, 3, 3, 1], conv_clamp=None,
                 channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
                memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}')
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        flip_weight = (self.up == 1)  # slightly faster
        weight = self.weight if self._weight_reparam is None else self._weight_reparam(self.weight)
        x = modulated_conv2d(x=x, weight=weight, styles=styles, noise=noise, up=self.up,
                             padding=self.padding, resample_filter=self.resample_filter,
                             flip_weight=flip_weight, fused_modconv=fused_modconv)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain,
                                 clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'resolution={self.resolution}, up={self.up}')


@persistent_class
class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation)."""
    _weight_reparam = None   # set by reparam.set_weight_reparam; never in the state_dict

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None,
                 channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
                memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        weight = self.weight if self._weight_reparam is None else self._weight_reparam(self.weight)
        x = modulated_conv2d(x=x, weight=weight, styles=styles, demodulate=False,
                             fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


@persistent_class
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: [const | conv0 (up 2)], conv1, [torgb], [skip]."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 architecture='skip', resample_filter=[1, 3, 3, 1], conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, **layer_kwargs):
        assert architecture in ['orig', 'skip', 'resnet'], architecture
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.name = f'b{resolution}'
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim,
                                        resolution=resolution, up=2, resample_filter=resample_filter,
                                        conv_clamp=conv_clamp, channels_last=self.channels_last,
                                        **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def feature_names(self):
        convs = ['conv1'] if self.in_channels == 0 else ['conv0', 'conv1']
        return [f'{self.name}.{conv}' for conv in convs] + [self.name]

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, record=None,
                **layer_kwargs):
        w_iter = iter(ws.unbind(dim=1))
        # fp16 on CUDA; on the CPU float32, or bfloat16 with precision.cpu_bf16.
        use_fp16 = self.use_fp16 and not force_fp32
        dtype = precision.reduced_dtype(ws.device) if use_fp16 else torch.float32
        memory_format = (torch.channels_last if self.channels_last and not force_fp32
                         else torch.contiguous_format)
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            if record is not None:
                record(f'{self.name}.conv1', x)
        elif self.architecture == 'resnet':
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            if record is not None:
                record(f'{self.name}.conv0', x)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5),
                           **layer_kwargs)
            if record is not None:
                record(f'{self.name}.conv1', x)
            x = y.add_(x)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            if record is not None:
                record(f'{self.name}.conv0', x)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            if record is not None:
                record(f'{self.name}.conv1', x)
        if record is not None:
            record(self.name, x)

        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'


@persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] in about [-1, 1]."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 num_fp16_res=0, **block_kwargs):
        resolution_log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or img_resolution != 2 ** resolution_log2:
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = resolution_log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = (res == img_resolution)
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last,
                                   use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)
        self.feature_names = [name for res in self.block_resolutions
                              for name in getattr(self, f'b{res}').feature_names()]
        # The per-layer order few-shot papers index (0 = b4.conv1, then conv0/conv1 per block).
        self.layer_names = [name for name in self.feature_names if '.' in name]

    def forward(self, ws, return_features=False, **block_kwargs):
        _check_shape(ws, [None, self.num_ws, self.w_dim], 'ws')
        record = make_recorder(return_features, self.feature_names)
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, record=record, **block_kwargs)
        if record is None:
            return img
        return img, record.features

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, '
                f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}')


@persistent_class
class Generator(torch.nn.Module):
    """G(z, c) = synthesis(mapping(z, c)); NVIDIA's constructor kwargs and call signature."""

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={},
                 synthesis_kwargs={}):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, return_features=False,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, return_features=return_features, **synthesis_kwargs)

    def add_conditioning(self, c_dim):
        """Condition an unconditional G on c (see MappingNetwork.add_conditioning); init_kwargs
        follow, so a snapshot of it rebuilds as NVIDIA's plain conditional G."""
        self.mapping.add_conditioning(c_dim)
        self.c_dim = c_dim
        self.init_kwargs['c_dim'] = c_dim
