"""Fixtures for checkpoint and dataset tests: NVIDIA-format pickles built here, never downloaded."""

import importlib.util
import pathlib

import pytest

_HELPERS = pathlib.Path(__file__).resolve().parents[1] / 'helpers_checkpoint.py'


def _load_helpers():
    spec = importlib.util.spec_from_file_location('helpers_checkpoint', _HELPERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def ckpt():
    """The helpers module (tests/helpers_checkpoint.py): pickle writers and tiny networks."""
    return _load_helpers()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty download cache of its own (returned) and no proxy for 127.0.0.1."""
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DNNLIB_CACHE_DIR', raising=False)
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    return tmp_path / 'cache'
