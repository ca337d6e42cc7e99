"""Write files so that a crash or a full disk never leaves a half-written one under the real name.

The data goes to a temporary file in the destination's own directory (so the final rename stays on
one file system and is atomic), is flushed and fsync'ed, and only then replaces the destination; the
directory is fsync'ed too, so that the rename itself survives a power cut. A process killed at any
point leaves either the old file or the new one under the real name, and at worst a stray
`.<name>.<random>.tmp` beside it (`stale_temp_files` finds them).
"""

import contextlib
import fnmatch
import os
import tempfile

from ..errors import reporting_disk_full


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


TEMP_SUFFIX = '.tmp'


def temp_prefix(name):
    return '.' + name + '.'


def stale_temp_files(directory, name_pattern):
    """Temporary files that killed writers left in `directory` for names matching the fnmatch
    `name_pattern` (e.g. 'network-snapshot-*.pkl')."""
    found = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith('.') and entry.endswith(TEMP_SUFFIX):
            stem = entry[1:-len(TEMP_SUFFIX)].rsplit('.', 1)[0]
            if fnmatch.fnmatch(stem, name_pattern):
                found.append(os.path.join(directory, entry))
    return found


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return   # e.g. Windows: directories cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode='wb', needs=None, sync=True):
    """Yield an open temporary file; on success it becomes `path`, on error it disappears.

    A full disk becomes DiskFull naming `path` and `needs` (bytes, or a callable giving them).
    sync=False skips the fsyncs (a crashed process still leaves no half file; a power cut may)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with reporting_disk_full(path, needs):
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=temp_prefix(os.path.basename(path)),
                                   suffix=TEMP_SUFFIX)
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give it normal permissions
            with os.fdopen(fd, mode) as file:
                yield file
                file.flush()
                if sync:
                    os.fsync(file.fileno())
            os.replace(tmp, path)
            if sync:
                _fsync_directory(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
