"""Settings for the whole suite."""

import importlib.util
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
