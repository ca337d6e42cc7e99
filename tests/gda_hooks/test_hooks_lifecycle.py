"""One test per setup, lifecycle, export and command-line hook."""

import json
import os

import click
import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import export
from gda_core.generate import open_model, render
from gda_hooks import hookimpl
from stylegan2_ada.reparam import get_weight_reparam


def test_hook_setup(probe_run):
    # Once, in the fresh run, after construction was applied (G_ema and anchors exist).
    assert probe_run['train_calls']['setup'] == [dict(mode='train', has_G_ema=True, anchors=[6, 16])]
    assert len(probe_run['probe'].calls['setup']) == 1   # generate did not call it


def test_hook_on_tick(probe_run):
    assert probe_run['train_calls']['on_tick'] == [1, 2]
    with open(os.path.join(probe_run['run_dir'], 'stats.jsonl')) as f:
        ticks = [json.loads(line) for line in f]
    assert [tick['probe/ticked'] for tick in ticks] == [1.0, 2.0]


def test_hook_state_dict(probe_run):
    plugins = stylegan2_ada.load(probe_run['snapshot'])['gda']['plugins']
    assert [p['name'] for p in plugins] == ['probe']
    record = plugins[0]
    assert record['distribution'] == 'test-probe' and record['version'] == '1.0'
    assert record['options'] == {'weight': 0.01, 'tag': 'x'}
    assert record['state']['ticks'] == 2 and torch.equal(record['state']['vector'], torch.arange(3.0))


def test_hook_load_state_dict(probe_run):
    calls = [call for call in probe_run['probe'].calls['load_state_dict']]
    # Twice, both generating from the snapshot: comparison.png at the end of the fine-tuning
    # run, then the fixture's own open_model. Training never reloads its own state.
    assert [call['mode'] for call in calls] == ['generate', 'generate']
    assert all(call['state']['ticks'] == 2 for call in calls)
    assert all(torch.equal(call['state']['vector'], torch.arange(3.0)) for call in calls)


def test_hook_on_snapshot(probe_run):
    # Called after each snapshot is in place (one per tick here: --snap 1).
    assert probe_run['train_calls']['on_snapshot'] == [dict(exists=True, iteration=2),
                                                       dict(exists=True, iteration=4)]


class Doubler(torch.nn.Module):
    def forward(self, weight):
        return weight * 2


class FoldablePlugin:
    """A reparam with no parameters (W' = 2W on one layer) that folds exactly into W."""

    @hookimpl
    def weight_reparam(self, run):
        return {'G.synthesis.b8.conv0': Doubler()}

    @hookimpl
    def fold(self, run, G):
        with torch.no_grad():
            G.synthesis.b8.conv0.weight.mul_(2)


def test_hook_fold(tiny, hp, tmp_path):
    manager = hp.manager(('doubler', FoldablePlugin()))
    run_dir = hp.train(tmp_path / 'runs', *tiny, manager, plugins=['doubler'], iters=1)
    model = open_model(hp.snapshot_path(run_dir), manager=manager)
    assert isinstance(get_weight_reparam(model.G.synthesis.b8.conv0), Doubler)
    out = tmp_path / 'G.pt'
    _, folded = export.export(model, manager, str(out))
    assert folded == ['doubler']
    plain = stylegan2_ada.load(str(out))['G_ema']
    assert get_weight_reparam(plain.synthesis.b8.conv0) is None
    z = torch.randn([3, plain.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exported = plain(z, None, noise_mode='const')
    assert torch.allclose(exported, render(model, z), atol=1e-5)


class Commands:
    """Adds `hello`, and tries to add `train`, which a core command already is."""

    @hookimpl
    def register_commands(self, cli):
        @cli.command()
        @click.option('--name', default='world')
        def hello(name):
            """Say hello."""
            click.echo(f'hello {name}')

        @cli.command()
        def train():
            """Clashes with the core command."""


class Broken:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError('boom')


def test_hook_register_commands(hp):
    manager = hp.manager(('greeter', Commands()), ('broken', Broken()))

    @click.group()
    def cli():
        pass

    @cli.command()
    def train():
        click.echo('core train')

    warnings = []
    manager.register_commands(cli, warn=warnings.append)
    assert sorted(cli.commands) == ['hello', 'train']
    assert CliRunner().invoke(cli, ['hello', '--name', 'gda']).output == 'hello gda\n'
    assert CliRunner().invoke(cli, ['train']).output == 'core train\n'   # not replaced
    assert any("'broken'" in w and 'boom' in w for w in warnings)
    assert any("'greeter'" in w and "'train'" in w and 'clashes' in w for w in warnings)


@pytest.mark.parametrize('hook', ['on_tick', 'on_snapshot'])
def test_lifecycle_hooks_are_called_for_every_plugin_in_order(tiny, hp, tmp_path, hook):
    order = []

    def plugin(name):
        class Recorder:
            if hook == 'on_tick':
                @hookimpl
                def on_tick(self, run, info):
                    order.append(run.name)
            else:
                @hookimpl
                def on_snapshot(self, run, info):
                    order.append(run.name)
        return name, Recorder()

    manager = hp.manager(plugin('first'), plugin('second'))
    hp.train(tmp_path, *tiny, manager, plugins=['second', 'first'], iters=1)
    assert order == ['second', 'first']
