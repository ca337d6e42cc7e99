"""freezed: Freeze-D (Mo, Cho, Shin, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning
GANs", CVPR workshops 2020), a baseline of the few-shot papers.

Fine-tunes as usual but keeps D's first N layers, the ones nearest the image, at their source values.
N counts as NVIDIA's `--freezed`: fromrgb, conv0, conv1, skip of the highest-resolution block, then
three per block. Unlike NVIDIA's code the frozen weights stay Parameters (without gradients), so
snapshots keep NVIDIA's layout either way.
"""

from gda_hooks import hookimpl, non_negative, Option
from gda_core.layer_order import d_layer_order
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import FreezePolicy


@hookimpl
def options():
    return [Option('layers', int, 4, 'Freeze the first N layers of D (NVIDIA counting; 4 = the '
                                     'highest-resolution block)', validate=non_negative)]


@hookimpl
def freeze_policy(run):
    count = run.options['layers']
    order = d_layer_order(run.D)
    if count > len(order):
        raise UserError(f'--freezed-layers {count}: this D has {len(order)} layers '
                        f'({order[0]} ... {order[-1]})')
    prefixes = tuple(f'D.{path}.' for path in order[:count])
    return FreezePolicy(frozen=lambda qualname: qualname.startswith(prefixes))
