"""Checkpoint IO: load any supported network file safely, write gda snapshots and state_dicts.

`load(source)` takes a preset name, an http(s) URL or a path and never runs code from the file;
see loader.py for the formats, snapshot.py for gda's own layout, safe_pickle.py for the guarantee,
rosinality.py / rosinality_export.py for rosinality/stylegan2-pytorch checkpoints.
"""

from .atomic import atomic_write
from .download import cache_dir, download
from .loader import load, sha256
from .presets import PRESETS, resolve
from .rebuild import module_record
from .rosinality_export import save_rosinality
from .snapshot import FORMAT_VERSION, export_state_dict, import_state_dict, save_snapshot

__all__ = ['load', 'save_snapshot', 'export_state_dict', 'import_state_dict', 'module_record', 'resolve',
           'download', 'cache_dir', 'PRESETS', 'FORMAT_VERSION', 'sha256', 'atomic_write',
           'save_rosinality']
