"""freezed: Freeze-D (Mo, Cho, Shin, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning
GANs", CVPR workshops 2020), a baseline of the few-shot papers.

Fine-tunes as usual but keeps D's layers nearest the image at their source values. The default is
what the official README runs (`--freeze_D --feature_loc 3`): only D's last three blocks (the 4x4
epilogue, b8, b16) and its output layer train, whatever the resolution; the fromrgb layers stay
frozen as FreezeD's from_rgb does. `--freezed-layers N` instead freezes D's first N layers in
NVIDIA's `--freezed` counting (fromrgb, conv0, conv1, skip of the highest-resolution block, then
three per block). Frozen weights stay Parameters (without gradients), so snapshots keep NVIDIA's
layout either way.
"""

from gda_hooks import hookimpl, non_negative, Option
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import FreezePolicy

FEATURE_LOC = 3   # FreezeD's README: `--feature_loc 3`


def feature_loc_frozen(D):
    """D's layer paths FreezeD freezes with `--feature_loc 3`.

    FreezeD trains `progression.{8-k}` for k < 3 (its last blocks, the 4x4 one first) and
    `linear`. Mapped onto NVIDIA's D: the 4x4 block is our b4 epilogue, the next ones b8, b16, ...;
    every fromrgb is frozen (FreezeD's from_rgb is not in `progression`).
    """
    trained = {f'b{4 * 2 ** k}' for k in range(1, FEATURE_LOC)}
    return [path for path in D.layer_order()
            if path.endswith('.fromrgb') or path.split('.')[0] not in trained]


@hookimpl
def options():
    return [Option('layers', int, None, 'Freeze the first N layers of D in NVIDIA\'s counting '
                                        '(4 = the highest-resolution block). Default: FreezeD\'s '
                                        '--feature_loc 3, only the last three blocks and the '
                                        'output layer train', validate=non_negative)]


@hookimpl
def freeze_policy(run):
    count = run.options['layers']
    order = run.D.layer_order()
    if count is None:
        paths = feature_loc_frozen(run.D)
    elif count > len(order):
        raise UserError(f'--freezed-layers {count}: this D has {len(order)} layers '
                        f'({order[0]} ... {order[-1]})')
    else:
        paths = order[:count]
    prefixes = tuple(f'D.{path}.' for path in paths)
    return FreezePolicy(frozen=lambda qualname: qualname.startswith(prefixes))
