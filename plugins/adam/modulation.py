"""AdAM's kernel modulation W' = W * (1 + v u^T) (Zhao et al., NeurIPS 2022, eq. 2-3).

One rank-one multiplicative modulation per layer: u over the inputs of a filter (input channels x
kernel taps), v over the output filters, both drawn at 1e-7 scale (official init), so at the start
the modulated network equals the source to within 1e-14 relative. `keep` (a buffer, saved with the
module) says which filters are modulated: the others are fine-tuned instead, their row of v u^T is
off, and their base weight receives gradients. The kept filters' base rows are detached, so they
get no gradient through the network: with the core's Adam beta1 = 0 they stay at the source.
"""

import torch

INIT_SCALE = 1e-7   # the official randn * 1e-7 for u and v


class KernelModulation(torch.nn.Module):
    """W [rows, ...] -> W' = (W_kept.detach() | W_tuned) * (1 + (v * keep) u^T)."""

    def __init__(self, shape, generator=None):
        super().__init__()
        rows, cols = int(shape[0]), int(torch.Size(shape[1:]).numel())
        self.shape = torch.Size(shape)
        self.u = torch.nn.Parameter(torch.randn([cols], generator=generator) * INIT_SCALE)
        self.v = torch.nn.Parameter(torch.randn([rows], generator=generator) * INIT_SCALE)
        self.register_buffer('keep', torch.ones([rows]))

    def delta(self, dtype=torch.float32):
        """v u^T as a weight-shaped tensor, zero on the filters that are not kept."""
        outer = (self.v * self.keep)[:, None] * self.u[None, :]
        return outer.reshape(self.shape).to(dtype)

    def forward(self, weight):
        if weight.shape != self.shape:
            raise ValueError(f'kernel modulation of shape {list(self.shape)} cannot modulate a '
                             f'weight of shape {list(weight.shape)}')
        keep = self.keep.to(weight.dtype).reshape([-1] + [1] * (weight.ndim - 1))
        base = keep * weight.detach() + (1 - keep) * weight
        return base * (1 + self.delta(weight.dtype))

    def extra_repr(self):
        return f'shape={list(self.shape)}, kept={int(self.keep.sum())}/{len(self.keep)}'


def slot_name(path):
    """'G.synthesis.b8.conv0.affine' -> 'G_synthesis_b8_conv0_affine' (ModuleDict keys have no
    dots)."""
    return path.replace('.', '_')


@torch.no_grad()
def fold_into(layer, modulation):
    """Write W' into the layer's stored weight: the plain layer then computes what the modulated
    one did, so `gda export` needs no plugin."""
    layer.weight.copy_(modulation(layer.weight))
