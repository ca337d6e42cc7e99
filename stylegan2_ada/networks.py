"""NVIDIA's `training.networks` under one name: every network class the pickles refer to."""

from .discriminator import (Discriminator, DiscriminatorBlock, DiscriminatorEpilogue,
                            MinibatchStdLayer)
from .generator import (Generator, SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer)
from .layers import (Conv2dLayer, FullyConnectedLayer, MappingNetwork, modulated_conv2d,
                     normalize_2nd_moment)

__all__ = [
    'Conv2dLayer', 'Discriminator', 'DiscriminatorBlock', 'DiscriminatorEpilogue',
    'FullyConnectedLayer', 'Generator', 'MappingNetwork', 'MinibatchStdLayer', 'SynthesisBlock',
    'SynthesisLayer', 'SynthesisNetwork', 'ToRGBLayer', 'modulated_conv2d', 'normalize_2nd_moment',
]
