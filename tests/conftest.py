"""Settings and fixtures for the whole suite.

Shared helpers are the package tests/support/gda_testkit (on sys.path through pytest.ini's
`pythonpath`): test modules import them by name, `from gda_testkit import plugins as HP`.
"""

import builtins
import errno
import os

import pytest

from gda_testkit import checkpoint, metric_standins
from gda_testkit import plugins as HP


@pytest.fixture(autouse=True, scope='session')
def fast_cpu_for_tiny_networks():
    """One thread and no oneDNN: on the tiny networks of the tests, oneDNN's per-shape set-up and
    a second thread (the CI machine has two cores) cost more than they save."""
    with HP.FastCPU():
        yield


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(data folder of 6 images, tiny source snapshot path), made once per test module.
    (tests/gda_hooks/conftest.py overrides it with a session-wide one for its recorded run.)"""
    root = tmp_path_factory.mktemp('tiny')
    return HP.write_images(root / 'data'), HP.write_source(root / 'source.pkl')


@pytest.fixture(scope='session')
def ckpt():
    """gda_testkit.checkpoint: NVIDIA-format pickle writers and tiny networks."""
    return checkpoint


@pytest.fixture(scope='session')
def standins():
    """gda_testkit.metric_standins: scripted stand-ins for NVIDIA's detectors."""
    return metric_standins


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
