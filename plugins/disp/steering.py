"""How the prior C(x) steers G: the conditional mapping's prior columns at normal learning rate.

NVIDIA's conditional mapping embeds the condition (`mapping.embed`, learning rate x1), normalises
the embedding and joins it to z before fc0. fc0 learns at the mapping's x0.01 rate, and the
columns an unconditional source gets for the embedding start at zero (so the adapted G starts as
the source): at that rate they stay near zero and G ignores its prior. PriorColumns adds a
zero-initialised offset to those columns only, stored and trained at x1: the effective weights
move as fast as any normal layer's from the first step, while iteration 0 still computes the
source's w exactly. `gda export` folds the offset into fc0's stored weight (NVIDIA's layout).
"""

import torch


class PriorColumns(torch.nn.Module):
    """fc0's stored weight W [out, z_dim + embed] -> [W_z, W_c + delta / lr_multiplier].

    fc0 multiplies W by lr_multiplier / sqrt(in), so delta enters as delta / sqrt(in): Adam's
    steps on delta change the effective weights at the core learning rate, 100x fc0's own.
    """

    def __init__(self, out_features, z_dim, embed_features, lr_multiplier):
        super().__init__()
        self.z_dim = int(z_dim)
        self.scale = 1 / float(lr_multiplier)
        self.delta = torch.nn.Parameter(torch.zeros([out_features, embed_features]))

    def forward(self, weight):
        if weight.shape[1] != self.z_dim + self.delta.shape[1]:
            raise ValueError(f'disp prior columns of shape {list(self.delta.shape)} cannot offset '
                             f'an fc0 weight of shape {list(weight.shape)}')
        prior = weight[:, self.z_dim:] + self.delta.to(weight.dtype) * self.scale
        return torch.cat([weight[:, :self.z_dim], prior], dim=1)

    def extra_repr(self):
        return f'z_dim={self.z_dim}, prior columns={self.delta.shape[1]}, scale={self.scale:g}'


def for_mapping(mapping):
    """PriorColumns for `mapping`'s fc0, conditioned already (resume, generate) or not yet (a
    fresh run: add_conditioning will widen fc0 by embed_features columns)."""
    embed = mapping.init_kwargs.get('embed_features') or mapping.w_dim
    if mapping.c_dim > 0:
        embed = mapping.fc0.in_features - mapping.z_dim
    return PriorColumns(mapping.fc0.out_features, mapping.z_dim, embed,
                        mapping.init_kwargs['lr_multiplier'])


@torch.no_grad()
def fold_into(fc0, columns):
    """Write the offset into fc0's stored weight: the plain conditional G computes the same w."""
    fc0.weight.copy_(columns(fc0.weight))


@torch.no_grad()
def fold_centring(embed, mean, scale):
    """Make `embed` (NVIDIA's FullyConnectedLayer c -> embedding) take raw C(x): it computes on
    (c - mean) / scale during training, which is c @ (W g / scale)^T + b - mean @ (W g / scale)^T."""
    weight = embed.weight / scale.to(embed.weight)
    shift = (mean.to(weight) @ (weight * embed.weight_gain).t()) / embed.bias_gain
    embed.weight.copy_(weight)
    embed.bias.sub_(shift)
