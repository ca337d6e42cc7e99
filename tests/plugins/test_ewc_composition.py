"""The three plugins of issue 12 together, in an order where ewc's setup runs before disp has its
prior bank: ewc's Fisher describes the source alone, disp's new conditioning weights are not
penalised, adafm's gamma/beta train, and export folds adafm and writes disp's bank beside G."""

import json
import warnings

import torch
import torch.nn.functional as F
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main

from gda_testkit import plugins as HP


class Pooled(torch.nn.Module):
    """A TorchScript prior extractor: the 2x2-pooled image, 12 values."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img / 255, 2).flatten(1)


def test_ewc_disp_adafm_compose(tiny, tmp_path):
    data, source = tiny
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.script(Pooled()).save(str(tmp_path / 'pooled.pt'))
    result = CliRunner().invoke(main, [
        'train', '--data', data, '--source', source, '--outdir', str(tmp_path / 'runs'),
        '--plugin', 'ewc', '--plugin', 'disp', '--plugin', 'adafm', '--ewc-samples', '4',
        '--disp-extractor', str(tmp_path / 'pooled.pt'), '--adafm-g-res', '16', '--iters', '2',
        '--adafm-specific', 'source', '--tick', '0.004', '--snap', '2'])   # starts as the source
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / 'runs').iterdir())
    snapshot = stylegan2_ada.load(HP.snapshot_path(run_dir))
    states = {record['name']: record['state'] for record in snapshot['gda']['plugins']}
    fisher = states['ewc']['fisher']
    names = {name for name, _ in snapshot['G'].named_parameters()}
    assert names - set(fisher) == {'mapping.embed.weight', 'mapping.embed.bias', 'mapping.fc0.weight'}
    assert states['disp']['bank'].shape == (6, 12)
    assert 'param_groups/adafm/modulation' in snapshot['gda']['loop']['modules']
    stats = [json.loads(line)['losses'] for line in open(run_dir / 'stats.jsonl')]
    assert stats[0]['Loss/G/ewc/ewc'] == 0 and stats[1]['Loss/G/ewc/ewc'] > 0

    exported = CliRunner().invoke(main, ['export', '--network', HP.snapshot_path(run_dir),
                                         '--out', str(tmp_path / 'G.pt')])
    assert exported.exit_code == 0, exported.output
    assert 'folded in: disp, adafm' in exported.output and 'nothing to fold: ewc' in exported.output
    assert (tmp_path / 'G.disp.pt').is_file()


def test_resume_restores_the_plugin_state_exactly(tiny, tmp_path):
    """4 iterations straight == 2 + `gda train --resume` + 2, with ewc's Fisher and disp's bank
    coming back through load_state_dict (setup is not run again) and adafm's delay crossing the
    resume."""
    data, source = tiny
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.script(Pooled()).save(str(tmp_path / 'pooled.pt'))
    common = ['--data', data, '--source', source, '--plugin', 'disp', '--plugin', 'ewc',
              '--plugin', 'adafm', '--disp-extractor', str(tmp_path / 'pooled.pt'),
              '--ewc-samples', '4', '--adafm-g-res', '16', '--adafm-delay', '3', '--tick', '0.004',
              '--snap', '1']
    runs = {}
    for name, iters in (('straight', '4'), ('halves', '2')):
        result = CliRunner().invoke(main, ['train', '--outdir', str(tmp_path / name), '--iters',
                                           iters] + common)
        assert result.exit_code == 0, result.output
        runs[name] = next((tmp_path / name).iterdir())
    result = CliRunner().invoke(main, ['train', '--resume', str(runs['halves']), '--iters', '4'])
    assert result.exit_code == 0, result.output
    straight, halves = (stylegan2_ada.load(HP.snapshot_path(runs[name])) for name in ('straight', 'halves'))
    for net in ('G', 'D', 'G_ema'):
        for key, value in straight[net].state_dict().items():
            assert torch.equal(value, halves[net].state_dict()[key]), f'{net}.{key}'
    for first, second in zip(straight['gda']['plugins'], halves['gda']['plugins']):
        assert first['name'] == second['name']
        for key, value in first['state'].items():
            if torch.is_tensor(value):
                assert torch.equal(value, second['state'][key])
    fisher = [record['state']['fisher'] for record in halves['gda']['plugins'] if record['name'] == 'ewc'][0]
    assert all(torch.equal(value, fisher[name]) for name, value in
               [r['state']['fisher'] for r in straight['gda']['plugins'] if r['name'] == 'ewc'][0].items())
    stats = [json.loads(line) for line in open(runs['halves'] / 'stats.jsonl')]
    assert [entry['iteration'] for entry in stats] == [1, 2, 3, 4]
    assert ['ewc/fisher_mean' in entry['losses'] for entry in stats] == [True, False, False, False]
    assert stats[3]['losses']['Loss/G/ewc/ewc'] > 0
