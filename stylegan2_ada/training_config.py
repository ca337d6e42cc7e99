"""Training presets (--cfg) and how explicit options, plugin proposals and presets combine.

Numbers are NVIDIA's train.py presets; `fewshot` is CDC's adaptation setting scaled to the source
(decisions.md). Precedence: explicit CLI value > a plugin's proposed default > the preset.
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
        # CDC: batch 4, lr 0.002, R1 gamma 10, EMA decay 0.5^(32/10000) per iteration (ema_kimg
        # 1.25 at batch 4), ~5000 iterations (20 kimg), ADA target 0.6 reacting within 100 kimg.
        return dict(common, kimg=20, batch=4, mbstd=4, fmaps=0.5, lr=0.002, gamma=10.0,
                    ema_kimg=1.25, ema_rampup=None, map=8, ada_kimg=100)
    ref_gpus, kimg, batch, mbstd, fmaps, lr, gamma, ema, ramp, map_layers = _NVIDIA[cfg]
    values = dict(common, kimg=kimg, batch=batch, mbstd=mbstd, fmaps=fmaps, lr=lr, gamma=gamma,
                  ema_kimg=ema, ema_rampup=ramp, map=map_layers)
    if cfg == 'cifar':
        values.update(pl_weight=0.0, style_mixing=0.0, d_architecture='orig')
    return values


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
