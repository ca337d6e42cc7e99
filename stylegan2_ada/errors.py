"""The exceptions for problems a user can fix (bad input, options, files, a full disk, a diverged run).

The CLI prints such an error as one line and exits with its `exit_code` (2, or 3 for a run that
diverged); anything else is a bug and keeps its traceback. docs/errors.md lists the promises.
"""

import contextlib
import errno
import os
import shutil


class UserError(Exception):
    """A problem with the user's input; the message names it and says what to do."""

    exit_code = 2


class DiskFull(UserError):
    """The disk filled up while writing a file; nothing half-written was left under its name."""


class TrainingDiverged(UserError):
    """A loss or weight became non-finite; training stopped before writing anything non-finite."""

    exit_code = 3


def is_disk_full(error):
    """Whether ENOSPC (or a quota) is anywhere in `error`'s chain: torch and zipfile wrap the
    OSError of the failing write in their own exceptions."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if 'No space left on device' in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _megabytes(count):
    return f'{count / 2 ** 20:.1f} MB'


def disk_full_message(path, needs=None):
    """One line: the disk is full, where, how much is free and (if known) how much is needed."""
    if path is None:
        return 'the disk is full: no space left on device; free some space or write to another disk'
    directory = os.path.dirname(os.path.abspath(path))
    try:
        free = f'{_megabytes(shutil.disk_usage(directory).free)} free there'
    except OSError:
        free = 'free space unknown'
    wanted = f'; it needs about {_megabytes(needs)}' if needs else ''
    return (f'the disk is full: no space left on device writing {path} ({free}{wanted}); free '
            f'some space or write to another disk')


@contextlib.contextmanager
def reporting_disk_full(path, needs=None):
    """Turn a write failing for lack of space (however wrapped) into DiskFull naming `path`.

    `needs` is the size in bytes, or a callable giving it, when it can be known."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as error:
        if not is_disk_full(error):
            raise
        size = needs() if callable(needs) else needs
        raise DiskFull(disk_full_message(path, size)) from None
