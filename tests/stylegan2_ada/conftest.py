"""Fixtures for checkpoint and dataset tests: NVIDIA-format pickles built here, never downloaded
(the `ckpt` fixture, gda_testkit.checkpoint, is in tests/conftest.py)."""

import pytest


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty download cache of its own (returned) and no proxy for 127.0.0.1."""
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DNNLIB_CACHE_DIR', raising=False)
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    return tmp_path / 'cache'
