"""What makes a folder a gda run directory, for the commands that read one (metrics, report)."""

import os

from stylegan2_ada.errors import UserError

RUN_MARKERS = ('training_options.json', 'stats.jsonl')


def is_run_dir(path):
    """A folder that `gda train` wrote: it holds training_options.json or stats.jsonl."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, name))
                                       for name in RUN_MARKERS)


def require_run_dir(path, command):
    """UserError, before anything is written, unless `path` is a run directory."""
    if not os.path.isdir(path):
        raise UserError(f'{path} is not a directory; gda {command} reads a run directory of gda '
                        f'train (e.g. runs/00000-...)')
    if not is_run_dir(path):
        raise UserError(f'{path} is a folder but not a run directory (no '
                        f'{" or ".join(RUN_MARKERS)}); give the directory gda train wrote')
