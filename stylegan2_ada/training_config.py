"""Training presets (--cfg) and how explicit options, plugin proposals and presets combine.

Numbers are NVIDIA's train.py presets; `fewshot` is CDC's adaptation setting (Ojha et al.'s
train.py, FEWSHOT_SOURCES says where each value comes from). Precedence: explicit CLI value > a
plugin's proposed default > the preset.
"""

from .errors import UserError

# name: (ref_gpus, kimg, batch, mbstd, fmaps, lr, gamma, ema_kimg, ema_rampup, map_layers)
_NVIDIA = {
    'stylegan2': (8, 25000, 32, 4, 1, 0.002, 10, 10, None, 8),
    'paper256':  (8, 25000, 64, 8, 0.5, 0.0025, 1, 20, None, 8),
    'paper512':  (8, 25000, 64, 8, 1, 0.0025, 0.5, 20, None, 8),
    'paper1024': (8, 25000, 32, 4, 1, 0.002, 2, 10, None, 8),
    'cifar':     (2, 100000, 64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
}
CFG_NAMES = ['auto', 'fewshot'] + list(_NVIDIA)
SOURCE_G = ('G_ema', 'G')   # --source-g: the source network fine-tuning starts from

# CDC adapts ADA's p by ada_target / ada_length = 0.6 / 500k per image of sign error; NVIDIA's
# controller moves p by 1 / (ada_kimg * 1000) per image, so the same rate is ada_kimg = 500 / 0.6.
CDC_ADA_KIMG = 500 / 0.6

# Where each value of --cfg fewshot comes from (utkarshojha/few-shot-gan-adaptation, train.py and
# run.sh); recorded in training_options.json.
FEWSHOT_SOURCES = {
    'batch': 'CDC run.sh --batch 4',
    'lr': 'CDC train.py --lr 0.002',
    'gamma': 'CDC train.py --r1 10',
    'ema_kimg': 'CDC train.py accum = 0.5 ** (32 / (10 * 1000)) per iteration: 1.25 kimg at batch 4',
    'ema_rampup': 'CDC train.py: no EMA ramp-up',
    'kimg': 'CDC run.sh --iter 5002 at batch 4: ~20 kimg',
    'map': 'CDC train.py n_mlp = 8 (with a source its own depth is used)',
    'mbstd': 'rosinality Discriminator stddev_group 4',
    'style_mixing': 'CDC train.py --mixing 0.9',
    'pl_weight': 'CDC train.py --path_regularize 2',
    'ada_target': 'CDC train.py --ada_target 0.6',
    'ada_kimg': 'CDC train.py --ada_length 500000: p moves 0.6 per 500k images, ada_kimg 833.3',
    'mirror': 'CDC train.py transforms.RandomHorizontalFlip() on every batch',
    'fmaps': 'unused with a source (its own widths); NVIDIA auto value for --source none',
    'd_architecture': 'NVIDIA resnet D (rosinality ResBlocks)',
}

# Options every preset fills; the CLI may set any of them explicitly.
PRESET_KEYS = ['kimg', 'batch', 'mbstd', 'fmaps', 'lr', 'gamma', 'ema_kimg', 'ema_rampup', 'map',
               'style_mixing', 'pl_weight', 'ada_target', 'ada_kimg', 'd_architecture']


def preset(cfg, resolution, gpus=1, fine_tuning=False):
    """The option values of preset `cfg` for this resolution and process count."""
    if cfg not in CFG_NAMES:
        raise UserError(f'unknown --cfg {cfg!r}; choose one of {", ".join(CFG_NAMES)}')
    common = dict(style_mixing=0.9, pl_weight=2.0, ada_target=0.6,
                  ada_kimg=100 if fine_tuning else 500, d_architecture='resnet')
    if cfg == 'auto':
        batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        return dict(common, kimg=25000, batch=batch, mbstd=min(batch // gpus, 4),
                    fmaps=1 if resolution >= 512 else 0.5,
                    lr=0.002 if resolution >= 1024 else 0.0025,
                    gamma=0.0002 * resolution ** 2 / batch, ema_kimg=batch * 10 / 32,
                    ema_rampup=0.05, map=2)
    if cfg == 'fewshot':
        # CDC's train.py: batch 4, lr 0.002, R1 gamma 10, EMA decay 0.5^(32/10000) per iteration
        # (ema_kimg 1.25 at batch 4), ~5000 iterations (20 kimg), ADA target 0.6 at CDC's rate.
        return dict(common, kimg=20, batch=4, mbstd=4, fmaps=0.5, lr=0.002, gamma=10.0,
                    ema_kimg=1.25, ema_rampup=None, map=8, ada_kimg=CDC_ADA_KIMG)
    ref_gpus, kimg, batch, mbstd, fmaps, lr, gamma, ema, ramp, map_layers = _NVIDIA[cfg]
    values = dict(common, kimg=kimg, batch=batch, mbstd=mbstd, fmaps=fmaps, lr=lr, gamma=gamma,
                  ema_kimg=ema, ema_rampup=ramp, map=map_layers)
    if cfg == 'cifar':
        values.update(pl_weight=0.0, style_mixing=0.0, d_architecture='orig')
    return values


def preset_mirror(cfg):
    """Whether preset `cfg` mirrors the data when --mirror/--no-mirror is not given: CDC always
    flips (RandomHorizontalFlip), NVIDIA's presets leave it to --mirror."""
    return cfg == 'fewshot'


def preset_sources(cfg):
    """Where each value of preset `cfg` comes from, for training_options.json."""
    if cfg == 'fewshot':
        return dict(FEWSHOT_SOURCES)
    if cfg == 'auto':
        return {'*': "NVIDIA train.py cfg 'auto' (resolution-dependent)"}
    return {'*': f"NVIDIA train.py cfg {cfg!r}; ada_kimg 100 when fine-tuning (NVIDIA's resume rule)"}


def resolve(cfg, resolution, explicit, proposals=(), gpus=1, fine_tuning=False):
    """Merge preset < plugin proposals < explicit options; returns (options, origin per option).

    `proposals` is a list of (plugin_name, {option: value}). Two plugins proposing different values
    for an option the user did not set is a conflict: the user must choose.
    """
    options = preset(cfg, resolution, gpus=gpus, fine_tuning=fine_tuning)
    origin = {key: f'--cfg {cfg}' for key in options}
    proposed = {}
    for plugin, values in proposals:
        for key, value in values.items():
            if key in proposed and proposed[key][1] != value and explicit.get(key) is None:
                other = proposed[key][0]
                raise UserError(f'plugins {other!r} and {plugin!r} propose different values for '
                                f'--{key.replace("_", "-")} ({proposed[key][1]!r} vs {value!r}); '
                                f'set it explicitly')
            proposed.setdefault(key, (plugin, value))
    for key, (plugin, value) in proposed.items():
        options[key] = value
        origin[key] = f'plugin {plugin}'
    for key, value in explicit.items():
        if value is not None:
            options[key] = value
            origin[key] = 'command line'
    return options, origin
