"""Every option of a training run, once: `TrainingOptions`, with its type, default, unit and meaning.

The host builds one with `build` (command line > plugin proposals > --cfg preset > the defaults
below, then the values derived from the batch and, when fine-tuning, the source's architecture),
records it in training_options.json with each value's origin, and `--resume` reads it back with
`from_record`. The training loop receives this object; it has no defaults of its own.
"""

import dataclasses
from typing import Optional

from .errors import UserError
from .training_config import PRESET_KEYS, resolve


@dataclasses.dataclass
class TrainingOptions:
    # Preset, seed and stop condition.
    cfg: str = 'auto'                    # the --cfg preset the values started from
    seed: int = 0                        # seed of every random stream of the run
    kimg: Optional[float] = None         # kimg: stop after this many thousand real images
    iters: Optional[int] = None          # iterations: stop after this many (with kimg: the first)
    tick: Optional[float] = None         # kimg between tick lines; None: 4, or 50 iterations below batch 32
    snap: Optional[int] = None           # ticks between snapshots, 0: only at the end; None: 50 (5 below batch 32)
    # Optimisation.
    batch: int = 32                      # images per iteration, over all processes
    batch_gpu: Optional[int] = None      # images per process per accumulation round; None: the per-process batch
    lr: float = 0.002                    # Adam learning rate of G and D
    gamma: float = 10.0                  # R1 weight
    ema_kimg: float = 10.0               # kimg: half-life of G_ema
    ema_rampup: Optional[float] = None   # half-life at most cur_nimg * this (NVIDIA's ramp-up); None: off
    style_mixing: float = 0.9            # probability that a batch mixes two ws
    pl_weight: float = 2.0               # path-length regularisation weight
    G_reg_interval: int = 4              # iterations between G's lazy regularisation; 0: fused, every iteration
    D_reg_interval: int = 16             # iterations between D's lazy R1; 0: fused, every iteration
    # Augmentation.
    aug: str = 'ada'                     # 'ada' (p adapts), 'fixed' (p constant) or 'noaug'
    augpipe: str = 'bgc'                 # which augmentations (stylegan2_ada/augment_specs.py)
    p: Optional[float] = None            # augmentation probability: initial (ada) or constant (fixed)
    ada_target: float = 0.6              # ADA's target for E[sign(D(real))]
    ada_kimg: float = 500                # kimg for ADA's p to move from 0 to 1
    ada_interval: int = 4                # iterations between ADA's updates of p
    # Architecture: a network built from scratch (a fine-tuning run records its source's).
    map: int = 8                         # mapping layers
    fmaps: Optional[float] = None        # width: channel base fmaps * 32768 (None: not built from it)
    cbase: Optional[int] = None          # channel base, instead of fmaps
    cmax: Optional[int] = None           # channels per layer at most; None: 512
    zdim: Optional[int] = None           # z and w dimension; None: 512
    mbstd: Optional[int] = 4             # D's minibatch-std group (at most batch_gpu); None: off
    d_architecture: str = 'resnet'       # D: 'resnet', 'skip' or 'orig'
    # Execution.
    cpu_bf16: bool = False               # CPU: NVIDIA's fp16 blocks compute in bfloat16 (stylegan2_ada/precision.py)
    # Output.
    grid_size: int = 16                  # images in fakes*.png

    def record(self):
        """The values as training_options.json and the snapshots keep them (fmaps only when the
        networks were built from it)."""
        values = dataclasses.asdict(self)
        if values['fmaps'] is None:
            del values['fmaps']
        return values

    @classmethod
    def from_record(cls, values):
        """The options record() wrote (options a run recorded before they existed take their
        defaults); UserError naming any value this version does not know."""
        unknown = sorted(set(values) - FIELDS)
        if unknown:
            raise UserError(f'the recorded options hold {", ".join(unknown)}, which this version '
                            f'of gda does not know; use the version that wrote them')
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


FIELDS = frozenset(field.name for field in dataclasses.fields(TrainingOptions))
# Command-line name -> field, where NVIDIA's flag names differ from the names inside.
RENAMES = dict(ema='ema_kimg', target='ada_target')
FIELD_FLAGS = {field: name for name, field in RENAMES.items()}
# Fields that describe a network built from scratch; with --source the source's are used.
ARCH_OPTIONS = ('cbase', 'cmax', 'map', 'zdim')
# What a fine-tuning run takes from its source, not from the preset.
SOURCE_ARCH_KEYS = ARCH_OPTIONS + ('mbstd', 'd_architecture')
# What a plugin may propose a default for (propose_defaults).
PROPOSABLE = frozenset(PRESET_KEYS) | {'iters', 'batch_gpu', 'aug', 'augpipe', 'p', 'tick', 'snap'}


def flag(field):
    """The command-line flag of a field: '--ema' for ema_kimg, '--batch-gpu' for batch_gpu."""
    return '--' + FIELD_FLAGS.get(field, field).replace('_', '-')


def build(cfg, resolution, explicit, proposals=(), gpus=1, fine_tuning=False):
    """(TrainingOptions, origin per field) of a new run (or a resumed one, re-resolved); a
    fine-tuning run then takes its source's architecture with `use_source_architecture`.

    `explicit` maps fields to command-line values (None: not given); `proposals` lists (plugin,
    {field: value}). Precedence: explicit > plugin proposal > preset > the class defaults;
    --iters alone is the stop condition; tick, snap and batch_gpu left at None are derived from
    the batch.
    """
    given = sorted(flag(name) for name in ARCH_OPTIONS if explicit.get(name) is not None)
    if fine_tuning and given:
        raise UserError(f'{", ".join(given)} describe a network built from scratch; with --source '
                        f'the source\'s own architecture is used (drop them or use --source none)')
    values, origin = resolve(cfg, resolution, explicit, proposals, gpus=gpus,
                             fine_tuning=fine_tuning)
    if values.get('iters') is not None and origin['kimg'].startswith('--cfg'):
        values['kimg'] = None
        origin['kimg'] = 'none: --iters stops the run'
    values['cfg'] = cfg
    origin.setdefault('cfg', 'command line' if explicit.get('cfg') else 'default')
    values = {key: value for key, value in values.items() if value is not None or key in origin}
    options = TrainingOptions(**values)
    for name in FIELDS - set(origin):
        origin[name] = 'default'
    return _derived(options, gpus), origin


def _derived(options, gpus):
    """tick, snap and batch_gpu from the batch where not set; the checks they need."""
    if options.batch < 1 or options.batch % gpus != 0:
        raise UserError(f'--batch {options.batch} does not split evenly over {gpus} processes '
                        f'(--batch is the total over all of them); use a multiple of {gpus}')
    per_process = options.batch // gpus
    batch_gpu = options.batch_gpu or per_process
    if per_process % batch_gpu != 0:
        raise UserError(f'--batch-gpu {batch_gpu} must divide the per-process batch {per_process}')
    if options.kimg is None and options.iters is None:
        raise UserError('set --kimg or --iters: the run needs a stop condition')
    if options.aug == 'fixed' and options.p is None:
        raise UserError('--aug fixed needs --p (the augmentation probability)')
    if options.p is not None and not 0 <= options.p <= 1:
        raise UserError(f'--p {options.p} must lie in [0, 1]')
    small = options.batch < 32
    return options.replace(
        batch_gpu=batch_gpu,
        tick=options.tick if options.tick is not None else
        (max(options.batch * 50 / 1000, 0.001) if small else 4),
        snap=options.snap if options.snap is not None else (5 if small else 50))


def use_source_architecture(options, origin, architecture):
    """A fine-tuning run's architecture is its source's (origin 'source'), not the preset's; the
    minibatch-std group is the one the run keeps (at most batch_gpu)."""
    origin.pop('fmaps', None)
    for key, value in architecture.items():
        origin[key] = 'source'
    options = options.replace(fmaps=None, **architecture)
    if options.mbstd:
        options = options.replace(mbstd=min(options.mbstd, options.batch_gpu))
    return options


__all__ = ['TrainingOptions', 'build', 'use_source_architecture', 'flag', 'RENAMES', 'ARCH_OPTIONS', 'SOURCE_ARCH_KEYS',
           'PROPOSABLE', 'FIELDS']
