"""The declaration hooks: options (namespaced flags, types, errors) and proposed defaults."""

import json

import pytest
from click.testing import CliRunner

from gda_core.cli import _Group
from gda_core.cmd_train import make_train_command
from gda_hooks import Option, hookimpl


class Declaring:
    def __init__(self, proposals=None):
        self.proposals = proposals or {}
        self.seen = []

    @hookimpl
    def options(self):
        return [Option('kl_weight', float, 1000.0, 'Weight of the term'),
                Option('layers', int, 2, 'How many'),
                Option('mode', str, 'paper', 'Which variant', choices=('paper', 'code')),
                Option('const_noise', bool, False, 'Use constant noise')]

    @hookimpl
    def propose_defaults(self, options):
        self.seen.append(dict(options))
        return dict(self.proposals)


def invoke(hp, tiny, plugins, args, tmp_path):
    group = _Group(commands={'train': make_train_command(hp.manager(*plugins))})
    data, source = tiny
    return CliRunner().invoke(group, ['train', '--data', data, '--source', source, '--outdir',
                                      str(tmp_path), '--iters', '1', '--dry-run'] + args)


def test_hook_options(hp, tiny, tmp_path):
    plugin = Declaring()
    help_text = CliRunner().invoke(make_train_command(hp.manager(('idc', plugin))), ['--help']).output
    assert 'Options of plugin idc' in help_text
    for flag in ('--idc-kl-weight', '--idc-layers', '--idc-mode', '--idc-const-noise / --no-idc-const-noise'):
        assert flag in help_text
    result = invoke(hp, tiny, [('idc', plugin)], ['--plugin', 'idc', '--idc-kl-weight', '10',
                                                  '--idc-const-noise'], tmp_path)
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)['plugins'][0]
    assert entry['options'] == dict(kl_weight=10.0, layers=2, mode='paper', const_noise=True)
    assert entry['option_origin'] == dict(kl_weight='command line', layers='default',
                                          mode='default', const_noise='command line')
    assert plugin.seen[-1] == entry['options']   # parsed values reach the plugin's hooks


@pytest.mark.parametrize('args,message', [
    (['--plugin', 'idc', '--idc-layers', 'two'], "'two' is not a valid integer"),
    (['--plugin', 'idc', '--idc-mode', 'other'], "'other' is not one of 'paper', 'code'"),
    (['--idc-layers', '3'], "--idc-layers given, but plugin 'idc' is not active; add --plugin idc"),
    (['--plugin', 'idc', '--idc-weight', '3'], "No such option '--idc-weight'"),
])
def test_option_errors_exit_2(hp, tiny, tmp_path, args, message):
    result = invoke(hp, tiny, [('idc', Declaring())], args, tmp_path)
    assert result.exit_code == 2 and message in result.output, result.output


def test_hook_propose_defaults(hp, tiny, tmp_path):
    plugin = Declaring(proposals=dict(gamma=3.0, batch=2))
    result = invoke(hp, tiny, [('idc', plugin)], ['--plugin', 'idc'], tmp_path)
    config = json.loads(result.output)
    assert config['options']['gamma'] == 3.0 and config['option_origin']['gamma'] == 'plugin idc'
    assert config['options']['batch'] == 2
    assert config['option_origin']['lr'] == '--cfg fewshot'
    # An explicit value beats the proposal.
    config = json.loads(invoke(hp, tiny, [('idc', plugin)], ['--plugin', 'idc', '--gamma', '5'],
                               tmp_path).output)
    assert config['options']['gamma'] == 5 and config['option_origin']['gamma'] == 'command line'
    # A proposal for something that is not a core option is the plugin's error.
    result = invoke(hp, tiny, [('bad', Declaring(proposals=dict(learning_rate=1)))],
                    ['--plugin', 'bad'], tmp_path)
    assert result.exit_code == 2 and "plugin 'bad' proposes defaults for ['learning_rate']" in result.output
