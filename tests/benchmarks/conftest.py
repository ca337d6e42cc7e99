"""The benchmark scripts are plain modules in benchmarks/ (no package): that folder goes on
sys.path. tests/helpers_plugins.py is registered by path (tests/ itself cannot go on sys.path: its
folders mirror the packages' names). These tests then import both by name."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT / 'benchmarks') not in sys.path:
    sys.path.insert(0, str(ROOT / 'benchmarks'))
if 'helpers_plugins' not in sys.modules:
    _spec = importlib.util.spec_from_file_location('helpers_plugins', ROOT / 'tests' / 'helpers_plugins.py')
    sys.modules['helpers_plugins'] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules['helpers_plugins'])
