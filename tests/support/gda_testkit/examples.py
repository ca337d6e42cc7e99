"""The example scripts (examples/demo/*.py) as modules: they are scripts, not a package."""

import importlib.util
import pathlib

DEMO = pathlib.Path(__file__).resolve().parents[3] / 'examples' / 'demo'


def load_demo_script(name):
    """examples/demo/<name>.py, imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, DEMO / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
