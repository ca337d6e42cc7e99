"""Building blocks shared by the generator and the discriminator.

Weights are stored unscaled and multiplied by their He gain at run time (equalised learning rate),
exactly as NVIDIA's networks do, so NVIDIA's state_dicts load unchanged.
"""

import numpy as np
import torch

from .ops import bias_act, conv2d_resample, fma, upfirdn2d
from .persistence import persistent_class


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale each vector to unit second moment (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2's modulated convolution: styles scale the weight per input channel.

    fused_modconv runs one grouped convolution with per-sample weights (fast at inference); the
    other path scales activations instead, which trains faster and is what NVIDIA uses in training.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape

    # Keep fp16 activations in range by normalising weight and styles before modulating.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw)
                           / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    if not fused_modconv:
        # The per-sample weights are never built here: their squared norm per output channel is
        # sum_i styles_i^2 * sum_k weight_oik^2, a small matmul (the same sum as NVIDIA's
        # w.square().sum(), reordered; building w [N, O, I, k, k] costs more than the conv).
        dcoefs = None
        if demodulate:
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up,
                                            down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


def _weight_or_buffer(module, name, value, trainable):
    """Frozen layers (Freeze-D) keep weights as buffers under the same state_dict name."""
    if trainable:
        setattr(module, name, torch.nn.Parameter(value))
    else:
        module.register_buffer(name, value)


@persistent_class
class FullyConnectedLayer(torch.nn.Module):
    _weight_reparam = None   # set by reparam.set_weight_reparam; never in the state_dict

    def __init__(self, in_features, out_features, bias=True, activation='linear', lr_multiplier=1,
                 bias_init=0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = (torch.nn.Parameter(torch.full([out_features], np.float32(bias_init)))
                     if bias else None)
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight if self._weight_reparam is None else self._weight_reparam(self.weight)
        w = w.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


@persistent_class
class Conv2dLayer(torch.nn.Module):
    _weight_reparam = None   # set by reparam.set_weight_reparam; never in the state_dict

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation='linear', up=1,
                 down=1, resample_filter=[1, 3, 3, 1], conv_clamp=None, channels_last=False,
                 trainable=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
            memory_format=memory_format)
        _weight_or_buffer(self, 'weight', weight, trainable)
        if bias:
            _weight_or_buffer(self, 'bias', torch.zeros([out_channels]), trainable)
        else:
            self.bias = None

    def forward(self, x, gain=1):
        w = self.weight if self._weight_reparam is None else self._weight_reparam(self.weight)
        w = w * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # slightly faster; transposed convs need the unflipped weight
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter,
                                            up=self.up, down=self.down, padding=self.padding,
                                            flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'activation={self.activation}, up={self.up}, down={self.down}')


@persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and an embedded label c) -> w, broadcast to num_ws copies, with truncation."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None,
                 layer_features=None, activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        x = None
        if self.z_dim > 0:
            _check_shape(z, [None, self.z_dim], 'z')
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            _check_shape(c, [None, self.c_dim], 'c')
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            assert self.w_avg_beta is not None, 'truncation needs the tracked w_avg'
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    @torch.no_grad()
    def add_conditioning(self, c_dim):
        """Make an unconditional mapping conditional while it still computes the same w.

        For conditioning by a plugin (DISP's C(x)): `embed` (c_dim -> embed_features) is created
        and fc0 gains zero columns for the embedding, so w does not depend on c until training
        moves them. The result is NVIDIA's conditional layout (keys in NVIDIA's order, c_dim in
        init_kwargs), so a snapshot rebuilds it. fc0's runtime gain depends on its width: its
        stored weights are rescaled to keep the effective weights, exact up to float rounding.
        """
        if self.c_dim != 0 or self.z_dim == 0:
            raise ValueError(f'add_conditioning needs an unconditional mapping of z; this one has '
                             f'z_dim {self.z_dim}, c_dim {self.c_dim}')
        if c_dim <= 0:
            raise ValueError(f'c_dim must be positive, got {c_dim}')
        embed_features = self.init_kwargs.get('embed_features') or self.w_dim
        old = self.fc0
        fc0 = FullyConnectedLayer(old.in_features + embed_features, old.out_features,
                                  activation=old.activation,
                                  lr_multiplier=self.init_kwargs['lr_multiplier'])
        fc0.to(old.weight.device)
        fc0.weight.zero_()
        fc0.weight[:, :old.in_features] = old.weight.double() * (old.weight_gain / fc0.weight_gain)
        fc0.bias.copy_(old.bias)
        fc0.requires_grad_(old.weight.requires_grad)
        embed = FullyConnectedLayer(c_dim, embed_features).to(old.weight.device)
        children = dict(self._modules)
        self._modules.clear()
        self._modules.update(embed=embed, **dict(children, fc0=fc0))   # NVIDIA's order
        self.c_dim = c_dim
        self.init_kwargs['c_dim'] = c_dim

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'


def _check_shape(tensor, shape, name):
    """A readable error for a wrongly shaped network input (None = any size)."""
    if tensor.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        expected = '[' + ', '.join('N' if s is None else str(s) for s in shape) + ']'
        raise ValueError(f'{name} has shape {list(tensor.shape)}, expected {expected}')
