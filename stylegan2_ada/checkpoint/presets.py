"""Short names for NVIDIA's published StyleGAN2-ADA networks, and turning any source into a file.

The names are NVIDIA's --resume presets (the transfer-learning sources) plus the networks of the
StyleGAN2-ADA paper; a source is one of these names, an http(s) URL or a local path.
"""

import os

from ..errors import UserError
from .download import download, is_url

_BASE = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained'
_TRANSFER = f'{_BASE}/transfer-learning-source-nets'

PRESETS = {
    'ffhq256': f'{_TRANSFER}/ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512': f'{_TRANSFER}/ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024': f'{_TRANSFER}/ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': f'{_TRANSFER}/celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256': f'{_TRANSFER}/lsundog-res256-paper256-kimg100000-noaug.pkl',
    **{name: f'{_BASE}/{name}.pkl'
       for name in ('ffhq', 'metfaces', 'afhqcat', 'afhqdog', 'afhqwild', 'brecahad', 'cifar10')},
}


def preset_names():
    return ', '.join(PRESETS)


def resolve(source, cache=None, verbose=False):
    """(local file path, URL or None) for a preset name, URL or path."""
    source = os.fspath(source)
    url = PRESETS.get(source)
    if url is None and is_url(source):
        url = source
    if url is not None:
        return download(url, cache=cache, verbose=verbose), url
    if os.path.isfile(source):
        return source, None
    if os.path.isdir(source):
        raise UserError(f'source {source} is a folder; give a checkpoint file, a URL or a preset ({preset_names()})')
    raise UserError(f'source {source!r} is neither a file, an http(s) URL nor a preset name ({preset_names()})')
