"""`gda export`: a plain NVIDIA-layout G_ema, with plugins folded in or a clear refusal."""

import os

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import cmd_export
from gda_core.cli import main
from gda_hooks import NotFoldable, hookimpl
from stylegan2_ada.extensions import WTransform

from gda_testkit import plugins as HP


def test_export_of_a_run_whose_plugins_change_nothing_at_inference(tiny, tmp_path):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path / 'runs'), '--plugin', 'freezed', '--plugin',
                                       'diffaugment', '--iters', '1', '--snap', '1'])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / 'runs' / os.listdir(tmp_path / 'runs')[0]
    snapshot = HP.snapshot_path(run_dir)
    out = tmp_path / 'G.pt'
    result = CliRunner().invoke(main, ['export', '--network', snapshot, '--out', str(out)])
    assert result.exit_code == 0, result.output
    assert 'nothing to fold: freezed, diffaugment' in result.output
    exported = torch.load(out, weights_only=True)
    assert set(exported) == {'G_ema_class', 'G_ema_kwargs', 'G_ema_state'}
    G_ema = stylegan2_ada.load(snapshot)['G_ema']
    assert exported['G_ema_state'].keys() == G_ema.state_dict().keys()   # NVIDIA's layout
    assert all(torch.equal(exported['G_ema_state'][k], v) for k, v in G_ema.state_dict().items())
    assert stylegan2_ada.load(str(out))['G_ema'].img_resolution == 16


class Shift(torch.nn.Module):
    def forward(self, ws, it):
        return ws + 1


class NotFoldablePlugin:
    @hookimpl
    def w_transforms(self, run):
        return [WTransform('compression', Shift(), target='both')]

    @hookimpl
    def fold(self, run, G):
        raise NotFoldable('the norm rescaling is not linear')


class NoFold:
    @hookimpl
    def w_transforms(self, run):
        return [WTransform('adaptor', Shift()), WTransform('truncation', Shift(), modes={'train'})]


@pytest.mark.parametrize('plugin,message', [
    (NotFoldablePlugin(), "plugin 'it' cannot be folded into plain weights: the norm rescaling is not linear"),
    (NoFold(), "plugin 'it' changes generation (w transform 'adaptor') but does not implement fold"),
])
def test_export_refuses_to_drop_an_effect(tiny, tmp_path, monkeypatch, plugin, message):
    manager = HP.manager(('it', plugin))
    run_dir = HP.train(tmp_path / 'runs', *tiny, manager, plugins=['it'], iters=1)
    monkeypatch.setattr(cmd_export, 'default_manager', lambda: manager)
    out = tmp_path / 'G.pt'
    result = CliRunner().invoke(main, ['export', '--network', HP.snapshot_path(run_dir), '--out', str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()
