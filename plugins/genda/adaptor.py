"""GenDA's generator side (Yang et al., "One-Shot Generative Domain Adaptation", §2.2): the
attribute adaptor w' = a * w + b, the training-time truncation, and folding the adaptor into the
synthesis network's affine layers for a plain exported generator.
"""

import torch


class AttributeAdaptor(torch.nn.Module):
    """w' = a (*) w + b per W+ entry (eq. 3), a = 1 and b = 0 at init: exactly the source."""

    def __init__(self, num_ws, w_dim):
        super().__init__()
        self.a = torch.nn.Parameter(torch.ones([num_ws, w_dim]))
        self.b = torch.nn.Parameter(torch.zeros([num_ws, w_dim]))

    def forward(self, ws, it=None):
        return ws * self.a + self.b


class Truncation(torch.nn.Module):
    """The diversity constraint (eq. 5): w = w_avg + psi (w - w_avg), in training only.

    w_avg is the source's average w, copied when the run starts (the adapted G's own tracker
    would follow the mapping's outputs, which are the source's anyway since the mapping is frozen).
    """

    def __init__(self, w_avg, psi):
        super().__init__()
        self.psi = psi
        self.register_buffer('w_avg', w_avg.detach().clone())

    def forward(self, ws, it=None):
        return self.w_avg.lerp(ws, self.psi)


def ws_consumers(synthesis):
    """[(ws index, layer)] for every layer of the synthesis network that reads an entry of ws,
    in NVIDIA's indexing: a block's conv layers take consecutive entries and its ToRGB the entry
    after them, which the next block's first conv reads too."""
    consumers = []
    index = 0
    for res in synthesis.block_resolutions:
        block = getattr(synthesis, f'b{res}')
        convs = [block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1]
        consumers += [(index + i, layer) for i, layer in enumerate(convs)]
        if hasattr(block, 'torgb'):
            consumers.append((index + block.num_conv, block.torgb))
        index += block.num_conv
    return consumers


@torch.no_grad()
def fold_adaptor(G, a, b):
    """Write the adaptor into G's affines: affine(a * w + b) = affine'(w) with
    W' = W diag(a) and bias' = bias + (W g) b / g_bias (g: the layer's runtime weight gain)."""
    for index, layer in ws_consumers(G.synthesis):
        affine = layer.affine
        weight = affine.weight.double()
        shift = (weight * affine.weight_gain) @ b[index].double()
        affine.bias.copy_((affine.bias.double() + shift / affine.bias_gain).to(affine.bias.dtype))
        affine.weight.copy_((weight * a[index].double()).to(affine.weight.dtype))
