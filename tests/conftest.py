"""Settings for the whole suite."""

import builtins
import errno
import importlib.util
import os
import pathlib
import sys

import pytest

# tests/helpers_plugins.py, registered by path once (tests/ cannot go on sys.path: its folders
# mirror the packages' names), so test modules can also `import helpers_plugins`.
if 'helpers_plugins' not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        'helpers_plugins', pathlib.Path(__file__).resolve().parent / 'helpers_plugins.py')
    sys.modules['helpers_plugins'] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules['helpers_plugins'])
HP = sys.modules['helpers_plugins']


@pytest.fixture(autouse=True, scope='session')
def fast_cpu_for_tiny_networks():
    """One thread and no oneDNN: on the tiny networks of the tests, oneDNN's per-shape set-up and
    a second thread (the CI machine has two cores) cost more than they save."""
    with HP.FastCPU():
        yield


class _MeteredFile:
    """A file whose writes fail with ENOSPC once the shared `disk` budget of bytes is spent."""

    def __init__(self, file, disk):
        self._file, self._disk = file, disk

    def write(self, data):
        if len(data) > self._disk['left']:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk['left'] -= len(data)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.fixture
def small_disk(monkeypatch):
    """small_disk(n): from now on, files written through os.fdopen (every atomic write: snapshots,
    zips, images, training_options.json) or opened for writing with open() share n bytes, then
    fail as a full disk does."""
    real_fdopen, real_open = os.fdopen, builtins.open

    def limit(capacity):
        disk = dict(left=capacity)

        def metered_open(file, mode='r', *args, **kwargs):
            opened = real_open(file, mode, *args, **kwargs)
            return _MeteredFile(opened, disk) if set(mode) & set('wax+') else opened
        monkeypatch.setattr(os, 'fdopen', lambda *args, **kwargs: _MeteredFile(
            real_fdopen(*args, **kwargs), disk))
        monkeypatch.setattr(builtins, 'open', metered_open)
    return limit
