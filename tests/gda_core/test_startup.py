"""`gda --help`, every `gda <command> --help`, `gda plugins` and usage errors run without importing
torch (issue 23: torch alone takes 1-2 s to import). Timing lives in benchmarks/startup.py; these
tests check the cause, in a fresh interpreter where nothing has loaded torch yet."""

import json
import os
import subprocess
import sys

import pytest

from gda_core.cli import main
from gda_core.composition import option_flag
from gda_core.plugins import AUTOLOAD_ENV, default_manager

# Runs the CLI in-process with the given argument lists, then reports what got imported.
PROBE = '''
import json, sys
from click.testing import CliRunner
import gda_core.cli
codes = [CliRunner().invoke(gda_core.cli.main, args).exit_code for args in json.loads(sys.argv[1])]
heavy = sorted(name for name in ('torch', 'numpy', 'scipy') if name in sys.modules)
print(json.dumps(dict(codes=codes, heavy=heavy)))
'''


def _probe(arg_lists):
    """(exit codes, heavy modules imported) of running `gda` with each argument list in one new
    process, with the installed plugins loaded as for a user."""
    env = {key: value for key, value in os.environ.items() if key != AUTOLOAD_ENV}
    result = subprocess.run([sys.executable, '-c', PROBE, json.dumps(arg_lists)], env=env,
                            capture_output=True, text=True, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return found['codes'], found['heavy']


def test_help_of_every_command_and_the_plugin_listing_load_no_torch():
    arg_lists = [['--help'], ['plugins'], ['plugins', '--json']]
    arg_lists += [[name, '--help'] for name in sorted(main.commands)]
    codes, heavy = _probe(arg_lists)
    assert codes == [0] * len(arg_lists)
    assert 'torch' not in heavy


@pytest.mark.parametrize('args', [['train', '--no-such-option'], ['generate'],
                                  ['train', '--plugin', 'idc', '--idc-weight', 'heavy'],
                                  ['no-such-command']])
def test_usage_errors_exit_2_without_loading_torch(args):
    codes, heavy = _probe([args])
    assert codes == [2]
    assert 'torch' not in heavy


def test_train_help_still_lists_every_option_of_every_installed_plugin():
    from click.testing import CliRunner
    manager = default_manager()
    if not manager.plugins:
        pytest.skip(f'no plugins loaded ({AUTOLOAD_ENV} is set)')
    text = CliRunner().invoke(main, ['train', '--help'], terminal_width=200).output
    for name, plugin in manager.plugins.items():
        assert f'Options of plugin {name} ' in text
        for option in plugin.options:
            assert option_flag(name, option.name) in text


def test_plugin_commands_are_still_registered():
    from click.testing import CliRunner
    if 'rssa' not in default_manager().plugins:
        pytest.skip('rssa is not installed')
    result = CliRunner().invoke(main, ['--help'])
    assert 'invert' in result.output
