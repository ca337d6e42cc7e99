"""The patch-level discriminator head of CDC (§3.2): D's trunk up to an intermediate feature map,
then a 3x3 conv to one channel with a leaky ReLU (the official `Extra`), giving one realism logit
per patch instead of one per image.
"""

import re

import torch

from stylegan2_ada.errors import UserError
from stylegan2_ada.layers import Conv2dLayer

from .choices import AUTO
MIN_SIZE = 8   # the default map is never smaller than 8x8


def block_outputs(D):
    """D's block-output feature names from the image down: b{R}, ..., b8 (b{r} is r/2 square)."""
    return [name for name in D.feature_names if re.fullmatch(r'b\d+', name)]


def default_block(resolution):
    """The block whose output is resolution/8 square (b64's 32x32 at 256 px, CDC's map), but
    never smaller than 8x8: b{max(R/8, 8) * 2}."""
    return f'b{max(resolution // 8, MIN_SIZE) * 2}'


def candidate_blocks(D, block=AUTO, highp=1):
    """The maps the head may read: `block` (auto: default_block) and the highp-1 maps after it."""
    available = block_outputs(D)
    first = default_block(D.img_resolution) if block == AUTO else block
    if first not in available:
        if block == AUTO:
            raise UserError(f'patchd needs a D of at least {2 * MIN_SIZE} px for its {MIN_SIZE}x'
                            f'{MIN_SIZE} patch map; this D is {D.img_resolution} px')
        raise UserError(f'--patchd-block {block}: this D has no block {block!r}; choose one of '
                        f'{", ".join(available)}')
    start = available.index(first)
    chosen = available[start:start + highp]
    if len(chosen) < highp:
        raise UserError(f'--patchd-highp {highp}: only {len(available) - start} block outputs '
                        f'start at {first} ({", ".join(available[start:])}); lower it')
    return chosen


def block_channels(D, name):
    """Channels of D's block output `name`, read from the network (512 for b64 of paper256)."""
    return getattr(D, name).conv1.out_channels


class PatchHead(torch.nn.Module):
    """head(logits, feats, c, it) -> patch logits [N, 1, h, w] from one of `blocks`' outputs.

    One 3x3 conv (C -> 1, bias, leaky ReLU with gain sqrt 2, equalised learning rate) per
    candidate map, as the official Extra. With several candidates each D pass draws one from
    it.rng (the official highp).
    """

    def __init__(self, blocks, channels):
        super().__init__()
        self.blocks = list(blocks)
        self.convs = torch.nn.ModuleDict({
            name: Conv2dLayer(channels[name], 1, kernel_size=3, activation='lrelu')
            for name in self.blocks})

    def pick(self, it):
        if len(self.blocks) == 1:
            return self.blocks[0]
        return self.blocks[int(torch.randint(len(self.blocks), [], generator=it.rng))]

    def forward(self, logits, feats, c=None, it=None):
        name = self.pick(it)
        return self.convs[name](feats[name])
