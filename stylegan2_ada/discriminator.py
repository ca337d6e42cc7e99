"""StyleGAN2 discriminator ('resnet', 'skip' or 'orig'), with Freeze-D and label projection.

Same constructor kwargs, state_dict keys and call signature as NVIDIA's, plus an explicit feature
API: `D(img, c, return_features=True)` also returns a dict of fp32 features in layer order: `b{r}`
(the output of block r, at resolution r/2) for each block, then `b4.conv` [N,C,4,4] and `b4.fc`
[N,C] from the epilogue.
"""

import numpy as np
import torch

from . import precision
from .generator import make_recorder
from .layers import Conv2dLayer, FullyConnectedLayer, MappingNetwork, _check_shape
from .ops import upfirdn2d
from .persistence import persistent_class

LAYER_NAMES = ('fromrgb', 'conv0', 'conv1', 'skip')   # a block's layers in creation order


@persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """[fromrgb], conv0, conv1 (down 2), [skip]; layers before `freeze_layers` are frozen."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels,
                 first_layer_idx, architecture='resnet', activation='lrelu',
                 resample_filter=[1, 3, 3, 1], conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, freeze_layers=0):
        assert in_channels in [0, tmp_channels], (in_channels, tmp_channels)
        assert architecture in ['orig', 'skip', 'resnet'], architecture
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.name = f'b{resolution}'
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        # Layers are numbered across the whole D from the highest resolution; the first
        # `freeze_layers` of them keep their weights as buffers (Freeze-D).
        self.num_layers = 0

        def next_trainable():
            trainable = (first_layer_idx + self.num_layers) >= freeze_layers
            self.num_layers += 1
            return trainable

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1,
                                       activation=activation, trainable=next_trainable(),
                                       conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=next_trainable(), conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation,
                                 down=2, trainable=next_trainable(),
                                 resample_filter=resample_filter, conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=next_trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False, record=None):
        device = (x if x is not None else img).device
        use_fp16 = self.use_fp16 and not force_fp32
        dtype = precision.reduced_dtype(device) if use_fp16 else torch.float32
        memory_format = (torch.channels_last if self.channels_last and not force_fp32
                         else torch.contiguous_format)

        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        if record is not None:
            record(self.name, x)
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'


@persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Appends the std-dev of features across groups of samples (diversity signal for D)."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        if N % G != 0:
            raise ValueError(f'batch size {N} is not divisible by the minibatch-std group size {G}')
        F = self.num_channels
        c = C // F
        y = x.reshape(G, -1, F, c, H, W)   # [group, subgroups, F, c, H, W]
        y = y - y.mean(dim=0)               # deviation from the group mean
        y = y.square().mean(dim=0)          # variance over the group
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])           # [subgroups, F]
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)            # back to every sample and pixel
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'


@persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: [fromrgb], minibatch-std, conv, fc, out (projected onto cmap if conditional)."""

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture='resnet',
                 mbstd_group_size=4, mbstd_num_channels=1, activation='lrelu', conv_clamp=None):
        assert architecture in ['orig', 'skip', 'resnet'], architecture
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1,
                                       activation=activation)
        self.mbstd = (MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels,
                                      activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False, record=None):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        if record is not None:
            record('b4.conv', x)
        x = self.fc(x.flatten(1))
        if record is not None:
            record('b4.fc', x)
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture}'


@persistent_class
class Discriminator(torch.nn.Module):
    """D(img, c) -> logits [N, 1]; NVIDIA's constructor kwargs and call signature."""

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet',
                 channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                 cmap_dim=None, block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        resolution_log2 = int(np.log2(img_resolution))
        if img_resolution < 8 or img_resolution != 2 ** resolution_log2:
            raise ValueError(f'img_resolution must be a power of two >= 8, got {img_resolution}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = resolution_log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max)
                    for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim

        common_kwargs = dict(img_channels=img_channels, architecture=architecture,
                             conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx,
                                       use_fp16=(res >= fp16_resolution), **block_kwargs,
                                       **common_kwargs)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None,
                                          w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common_kwargs)
        self.feature_names = [f'b{res}' for res in self.block_resolutions] + ['b4.conv', 'b4.fc']

    def layer_order(self):
        """['b256.fromrgb', 'b256.conv0', 'b256.conv1', 'b256.skip', 'b128.conv0', ...]: D's
        layers in NVIDIA's `freeze_layers` counting, the order Freeze-D and AdaFM count in.

        NVIDIA numbers the layers across blocks from the highest resolution, in creation order
        within a block: fromrgb (when present), conv0, conv1, skip (resnet); the epilogue (b4) is
        not counted.
        """
        order = []
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            names = [f'b{res}.{name}' for name in LAYER_NAMES if hasattr(block, name)]
            if block.first_layer_idx != len(order) or block.num_layers != len(names):
                raise ValueError(f'D block b{res} does not follow NVIDIA\'s layer counting '
                                 f'(first index {block.first_layer_idx}, {block.num_layers} layers)')
            order += names
        return order

    def forward(self, img, c, return_features=False, **block_kwargs):
        _check_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution],
                     'img')
        record = make_recorder(return_features, self.feature_names)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, record=record, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        x = self.b4(x, img, cmap, record=record)
        if record is None:
            return x
        return x, record.features
