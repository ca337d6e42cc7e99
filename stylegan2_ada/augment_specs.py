"""NVIDIA's --augpipe presets, kept apart from the AugmentPipe so that the CLI can offer their names
without importing torch (`gda train --help` starts in well under a second)."""

_GROUPS = {
    'blit': dict(xflip=1, rotate90=1, xint=1),
    'geom': dict(scale=1, rotate=1, aniso=1, xfrac=1),
    'color': dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'filter': dict(imgfilter=1),
    'noise': dict(noise=1),
    'cutout': dict(cutout=1),
}


def _union(*groups):
    return {name: value for group in groups for name, value in _GROUPS[group].items()}


# NVIDIA's --augpipe presets: AugmentPipe(**AUGPIPE_SPECS[name]).
AUGPIPE_SPECS = dict(
    _GROUPS,
    bg=_union('blit', 'geom'),
    bgc=_union('blit', 'geom', 'color'),
    bgcf=_union('blit', 'geom', 'color', 'filter'),
    bgcfn=_union('blit', 'geom', 'color', 'filter', 'noise'),
    bgcfnc=_union('blit', 'geom', 'color', 'filter', 'noise', 'cutout'),
)

AUGPIPE_NAMES = sorted(AUGPIPE_SPECS)
