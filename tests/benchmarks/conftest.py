"""The benchmark scripts are plain modules in benchmarks/ (no package): that folder goes on
sys.path, so these tests import them by name (and the shared test helpers as gda_testkit, which
pytest.ini puts on sys.path)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT / 'benchmarks') not in sys.path:
    sys.path.insert(0, str(ROOT / 'benchmarks'))
