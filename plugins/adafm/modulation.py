"""AdaFM's filter modulation W' = gamma * W + beta (Zhao, Cong, Carin, ICML 2020, eq. 1).

gamma and beta have one entry per (output, input) channel pair and are broadcast over the kernel,
so a frozen, transferred filter keeps its spatial pattern while its statistics adapt to the target.
Both start at the identity (gamma 1, beta 0): the modulated network is the source, bit for bit.
"""

import torch


class FilterModulation(torch.nn.Module):
    """W [Cout, Cin, k, k] -> gamma[:, :, None, None] * W + beta[:, :, None, None]."""

    def __init__(self, out_channels, in_channels):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones([out_channels, in_channels]))
        self.beta = torch.nn.Parameter(torch.zeros([out_channels, in_channels]))

    def forward(self, weight):
        if weight.shape[:2] != self.gamma.shape:
            raise ValueError(f'AdaFM modulation of shape {list(self.gamma.shape)} cannot modulate a '
                             f'weight of shape {list(weight.shape)}')
        gamma = self.gamma.to(weight.dtype)[:, :, None, None]
        beta = self.beta.to(weight.dtype)[:, :, None, None]
        return weight * gamma + beta

    def extra_repr(self):
        return f'out_channels={self.gamma.shape[0]}, in_channels={self.gamma.shape[1]}'


def slot_name(path):
    """'G.synthesis.b32.conv0' -> 'b32_conv0': a ModuleDict key (no dots allowed)."""
    return path[len('G.synthesis.'):].replace('.', '_')


@torch.no_grad()
def fold_into(layer, modulation):
    """Write the modulation into the layer's stored weight: afterwards the plain layer computes
    what the modulated one did, so `gda export` needs no plugin."""
    layer.weight.copy_(modulation(layer.weight))
