"""Weight reparametrisation slots: a layer computes with f(W) while storing W unchanged.

Why a slot and not torch.nn.utils.parametrize: parametrize renames state_dict keys
(`parametrizations.weight.original`), which breaks NVIDIA's layout. The slot is an ordinary
attribute, not a registered submodule, so state_dict, parameters() and .to() ignore f: whoever sets
it owns f (the training loop keeps f in its parameter groups and gives G_ema f's EMA twin).
"""

from .generator import SynthesisLayer, ToRGBLayer
from .errors import UserError
from .layers import Conv2dLayer, FullyConnectedLayer

REPARAM_LAYERS = (SynthesisLayer, ToRGBLayer, Conv2dLayer, FullyConnectedLayer)


def set_weight_reparam(layer, f):
    """Make `layer` use f(weight) wherever it reads its stored weight; f=None restores W.

    f maps a weight to one of the same shape, differentiably. It runs before the runtime weight
    gain, style modulation and demodulation, on the fused and non-fused paths.
    """
    if not isinstance(layer, REPARAM_LAYERS):
        names = ', '.join(cls.__name__ for cls in REPARAM_LAYERS)
        raise TypeError(f'weight reparametrisation needs one of {names}, '
                        f'got {type(layer).__name__}')
    if f is None:
        layer.__dict__.pop('_weight_reparam', None)   # back to the class default (None)
    else:
        object.__setattr__(layer, '_weight_reparam', f)   # bypass nn.Module's registration


def get_weight_reparam(layer):
    """The f set on `layer`, or None."""
    return layer._weight_reparam


class Chain:
    """Several reparams of one layer applied in order, f2(f1(W)) (plugin order)."""

    def __init__(self, fns):
        self.fns = list(fns)

    def __call__(self, weight):
        for f in self.fns:
            weight = f(weight)
        return weight


def chain(fns):
    """One callable for a list of reparams: the reparam itself when there is only one."""
    fns = list(fns)
    return fns[0] if len(fns) == 1 else Chain(fns)


def resolve_layer(networks, path):
    """'G.synthesis.b64.conv0' -> ('G', layer); a clear error for anything else."""
    net, _, sub = path.partition('.')
    try:
        layer = networks[net].get_submodule(sub)
    except (KeyError, AttributeError):
        layer = None
    if not isinstance(layer, REPARAM_LAYERS):
        raise UserError(f'weight_reparam names {path!r}, which is not a layer with a weight in G '
                        f"or D (e.g. 'G.synthesis.b8.conv0'); this plugin does not fit these "
                        f'networks')
    return net, layer
