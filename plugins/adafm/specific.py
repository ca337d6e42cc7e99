"""AdaFM's "specific part" as the official code builds it: new layers, randomly initialised.

In MiaoyunZhao/GANTransferLimitedData (Flower_[h]our.py with resnet2_AdaFM) the low-resolution
part of G (`small_fc`, `small_net_*`, `small_style`: the mapping and the blocks below 32 px at
128 px) does not exist in the pretrained GP-GAN, so `model_equal_part` leaves it at its random
initialisation and it trains from there, while the transferred general part stays frozen and
modulated. On StyleGAN2 the specific part is the mapping network and the synthesis blocks below
`--adafm-g-res`; they get the values a newly constructed generator of the same architecture has.
"""

import zlib

import numpy as np
import torch


def specific_prefixes(G, threshold):
    """State-dict prefixes of G's specific part: the mapping and the blocks below `threshold`."""
    blocks = [f'synthesis.b{res}.' for res in G.synthesis.block_resolutions if res < threshold]
    return ('mapping.', *blocks)


def fresh_seed(seed):
    """The seed of the fresh layers: fixed by the run seed, independent of every other stream."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(b'adafm-specific')]).generate_state(1)
    return int(state[0])


@torch.no_grad()
def reinitialise(networks, prefixes, seed):
    """Overwrite every parameter and buffer under `prefixes` in each of `networks` (G and G_ema
    alike) with a newly constructed generator's (seeded). Returns the names overwritten.

    The template is built from the first network's init_kwargs, so every name exists with the
    same shape; a tensor a plugin added or widened (absent or shaped differently there) is an
    error rather than a silent mix of source and fresh values.
    """
    template = networks[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(template)(**template.init_kwargs).state_dict()
    names = []
    for net in networks:
        tensors = dict(net.named_parameters())
        tensors.update(net.named_buffers())
        for name, tensor in tensors.items():
            if not name.startswith(prefixes):
                continue
            if name not in fresh or fresh[name].shape != tensor.shape:
                raise ValueError(f'adafm: {name} has no counterpart in a new '
                                 f'{type(template).__name__}; it cannot be re-initialised')
            tensor.copy_(fresh[name])
            if net is template:
                names.append(name)
    return names
