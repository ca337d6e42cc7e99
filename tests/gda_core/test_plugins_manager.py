"""The plugin manager: entry points, isolation of broken plugins, `gda plugins`, autoload switch."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from gda_core import plugins as plugin_manager
from gda_core.cmd_plugins import describe_all, format_text
from gda_core.cmd_train import make_train_command
from gda_core.plugins import PluginError, PluginManager
from gda_hooks import Option, hookimpl
from stylegan2_ada.errors import UserError

from gda_testkit import plugins as HP


MODULES = {
    'gdatest_good': '''
        from gda_hooks import Option, hookimpl
        @hookimpl
        def options():
            return [Option('strength', float, 0.5, 'How strong')]
        @hookimpl
        def propose_defaults(options):
            return {'gamma': 2.0}
        ''',
    'gdatest_typo': '''
        from gda_hooks import hookimpl
        @hookimpl
        def g_loss_term(run):
            return []
        ''',
    'gdatest_signature': '''
        from gda_hooks import hookimpl
        @hookimpl
        def setup(run, dataset):
            pass
        ''',
    'gdatest_options': '''
        from gda_hooks import hookimpl
        @hookimpl
        def options():
            return 'weight'
        ''',
    'gdatest_wrapper': '''
        from gda_hooks import hookimpl
        @hookimpl(wrapper=True)
        def setup(run):
            yield
        ''',
    'gdatest_raises': '''
        raise RuntimeError('cannot import me')
        ''',
    'gdatest_exits': '''
        import sys
        sys.exit(3)
        ''',
    'gdatest_interrupts': '''
        raise KeyboardInterrupt('not a real Ctrl-C')
        ''',
}


@pytest.fixture
def plugin_modules(tmp_path, monkeypatch):
    for name, source in MODULES.items():
        (tmp_path / f'{name}.py').write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in MODULES:
        sys.modules.pop(name, None)


def entry_point(name, value):
    return importlib.metadata.EntryPoint(name, value, plugin_manager.ENTRY_POINT_GROUP)


def test_builtin_plugins_are_entry_points_of_the_gda_distribution():
    found = {ep.name: ep for ep in plugin_manager.found_entry_points()}
    assert found['freezed'].value == 'gda_plugins.freezed'
    assert found['diffaugment'].value == 'gda_plugins.diffaugment'
    manager = PluginManager()
    manager.load_entry_points()
    assert manager.plugins['freezed'].distribution == 'gda'
    assert manager.plugins['freezed'].hooks == ['options', 'freeze_policy']
    assert manager.plugins['diffaugment'].obj.__name__ == 'gda_plugins.diffaugment'


def test_a_failing_plugin_is_isolated_and_named(plugin_modules):
    manager = PluginManager()
    manager.load_entry_points([entry_point(name[len('gdatest_'):], name) for name in MODULES]
                              + [entry_point('missing', 'gdatest_not_installed')])
    assert sorted(manager.plugins) == ['good']
    errors = {name: broken.error for name, broken in manager.broken.items()}
    assert "implements 'g_loss_term', which is not a gda hook" in errors['typo']
    assert 'setup' in errors['signature'] and 'dataset' in errors['signature']
    assert 'options() must return a list of gda_hooks.Option' in errors['options']
    assert 'wrapper' in errors['wrapper']
    assert errors['raises'] == 'RuntimeError: cannot import me'
    assert errors['exits'] == 'it called sys.exit(3)'
    assert errors['interrupts'] == 'KeyboardInterrupt: not a real Ctrl-C'
    assert errors['missing'].startswith('ModuleNotFoundError')
    with pytest.raises(PluginError, match="plugin 'raises' failed to load: RuntimeError: cannot import me"):
        manager.get('raises')
    with pytest.raises(PluginError, match='--plugin nope: no such plugin; installed: good'):
        manager.get('nope')


def test_the_same_name_from_two_distributions_keeps_the_first(plugin_modules):
    manager = PluginManager()
    manager.load_entry_points([entry_point('good', 'gdatest_good'), entry_point('good', 'gdatest_typo')])
    assert manager.plugins['good'].obj.__name__ == 'gdatest_good'
    assert any('already taken' in broken.error for broken in manager.broken.values())


def test_a_broken_plugin_breaks_no_command(tmp_path):
    """A real installed distribution whose plugin cannot be imported, seen by a fresh process."""
    dist = tmp_path / 'gda_broken_example-1.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: gda-broken-example\nVersion: 1.0\n')
    (dist / 'entry_points.txt').write_text('[gda.plugins]\nbroken = gdatest_nowhere_to_be_found\n')
    script = textwrap.dedent('''
        import json
        from click.testing import CliRunner
        from gda_core.cli import main
        results = {}
        for args in (['plugins', '--json'], ['plugins'], ['train', '--help'], ['info', '--help'],
                     ['train', '--plugin', 'broken', '--data', 'x', '--source', 'none']):
            result = CliRunner().invoke(main, args)
            results[' '.join(args[:2])] = [result.exit_code, result.output]
        print(json.dumps(results))
    ''')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS='1')
    env.pop(plugin_manager.AUTOLOAD_ENV, None)
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    results = json.loads(out.splitlines()[-1])
    listed = {item['name']: item for item in json.loads(results['plugins --json'][1])}
    assert listed['broken']['status'] == 'failed'
    assert listed['broken']['distribution'] == 'gda-broken-example'
    assert "No module named 'gdatest_nowhere_to_be_found'" in listed['broken']['error']
    assert listed['freezed']['status'] == 'ok'
    assert 'broken  (gda-broken-example 1.0)  FAILED TO LOAD' in results['plugins'][1]
    assert results['train --help'][0] == 0 and results['info --help'][0] == 0
    code, output = results['train --plugin']
    assert code == 2
    assert "plugin 'broken' (gda-broken-example 1.0) failed to load: ModuleNotFoundError" in output


def test_autoloading_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(plugin_manager.AUTOLOAD_ENV, '1')
    plugin_manager.default_manager.cache_clear()
    try:
        manager = plugin_manager.default_manager()
        assert manager.plugins == {}
        with pytest.raises(PluginError, match='autoloading is off'):
            manager.get('freezed')
    finally:
        plugin_manager.default_manager.cache_clear()


def positive(value):
    if value <= 0:
        raise ValueError('must be positive')


class Proposing:
    @hookimpl
    def options(self):
        return [Option('depth', int, 3, 'How deep', validate=positive)]

    @hookimpl
    def propose_defaults(self, options):
        return {'batch': 4 * options['depth']}

    @hookimpl
    def freeze_policy(self, run):
        return None


def test_gda_plugins_lists_hooks_options_and_proposals():
    manager = HP.manager(('deep', Proposing()))
    listed = describe_all(manager)
    assert listed == [dict(name='deep', version='1.0', distribution='test-deep', status='ok',
                           hooks=['options', 'propose_defaults', 'freeze_policy'],
                           options=[dict(name='depth', flag='--deep-depth', type='int', default=3,
                                         help='How deep', choices=None)],
                           proposed_defaults={'batch': 12})]
    text = format_text(listed)
    assert 'deep  (test-deep 1.0)' in text and '--deep-depth INT  How deep [default: 3]' in text
    assert 'proposes: batch=12' in text
    real = json.loads(CliRunner().invoke(plugin_manager_cli(), ['plugins', '--json']).output)
    assert {'freezed', 'diffaugment'} <= {item['name'] for item in real}


def plugin_manager_cli():
    from gda_core.cli import main
    return main


def test_option_validation_runs_on_command_line_values(hp_tiny_args):
    result = hp_tiny_args(('deep', Proposing()), ['--plugin', 'deep', '--deep-depth', '0'])
    assert result.exit_code == 2 and '--deep-depth: must be positive' in result.output


def test_option_flags_that_clash_with_core_flags_take_the_plugin_out(hp_tiny_args):
    class Batch:
        @hookimpl
        def options(self):
            return [Option('gpu', int, 1, 'Clashes with --batch-gpu')]

    result = hp_tiny_args(('batch', Batch()), ['--plugin', 'batch'])
    assert result.exit_code == 2
    assert "plugin 'batch' (test-batch 1.0) failed to load: its option flag(s) --batch-gpu clash" in result.output


@pytest.fixture
def hp_tiny_args(tiny, tmp_path):
    from gda_core.cli import _Group

    def invoke(plugin, args):
        group = _Group(commands={'train': make_train_command(HP.manager(plugin))})
        data, source = tiny
        return CliRunner().invoke(group, ['train', '--data', data, '--source', source, '--outdir',
                                          str(tmp_path), '--iters', '1', '--dry-run'] + args)
    return invoke


class Failing:
    def __init__(self, error):
        self.error = error

    @hookimpl
    def freeze_policy(self, run):
        raise self.error


def test_errors_inside_a_hook_name_the_plugin(tiny, tmp_path):
    manager = HP.manager(('bug', Failing(RuntimeError('oops'))), ('user', Failing(UserError('bad input'))))
    with pytest.raises(RuntimeError, match='oops') as info:
        HP.train(tmp_path, *tiny, manager, plugins=['bug'])
    assert "raised by hook 'freeze_policy' of plugin 'bug' (test-bug 1.0)" in info.value.__notes__
    with pytest.raises(UserError, match="^plugin 'user': bad input$"):
        HP.train(tmp_path, *tiny, manager, plugins=['user'])
    assert not os.path.exists(tmp_path / '00000-data-fewshot-batch4')


def test_a_hook_returning_the_wrong_type_is_the_plugins_error(tiny, tmp_path):
    class WrongHeads:
        @hookimpl
        def d_heads(self, run):
            return 'not a list'

    with pytest.raises(PluginError, match=r"plugin 'wrong': d_heads\(\) must return a list, got str"):
        HP.train(tmp_path, *tiny, HP.manager(('wrong', WrongHeads())), plugins=['wrong'])


def test_a_plugin_calling_sys_exit_on_import_ends_no_command(tmp_path):
    """Installed in a fresh process: --help, gda plugins and other commands work; the plugin is
    listed with the reason."""
    dist = tmp_path / 'gda_exiting_example-1.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: gda-exiting-example\nVersion: 1.0\n')
    (dist / 'entry_points.txt').write_text('[gda.plugins]\nexiting = gdatest_exiting\n')
    (tmp_path / 'gdatest_exiting.py').write_text('import sys\nsys.exit(7)\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS='1')
    env.pop(plugin_manager.AUTOLOAD_ENV, None)

    def gda(*args):
        return subprocess.run([sys.executable, '-m', 'gda_core', *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True)
    assert gda('--help').returncode == 0 and 'train' in gda('--help').stdout
    listing = gda('plugins')
    assert listing.returncode == 0
    assert 'exiting  (gda-exiting-example 1.0)  FAILED TO LOAD: it called sys.exit(7)' in listing.stdout
    assert 'freezed' in listing.stdout
    assert gda('info', '--help').returncode == 0
