"""rick: the prune/freeze/fine-tune partition against a hand-computed case, the gradient masks,
and `gda train --plugin rick` end to end on tiny networks: warm-up, frozen filters at their value,
pruned filters zero in G, G_ema, D and the exported generator, exact resume across an estimate."""

import os

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main
from gda_core.filters import Unit
from gda_plugins.rick import partition
from gda_plugins.rick.masks import GradientMasks
from gda_plugins.rick.partition import FROZEN, PRUNED, TUNED

from gda_testkit import plugins as HP

# warm-up 1, an estimate at iterations 1 and 3; 20 % pruned so tiny networks prune something
QUICK = ['--rick-warmup', '1', '--rick-fisher-freq', '2', '--rick-fisher-batches', '1',
         '--rick-prune-quantile', '20']


def test_partition_by_hand_and_pruned_filters_stay_pruned():
    a, b = Unit('G.a', 'g_conv', 'G.a.weight'), Unit('G.b', 'g_conv', 'G.b.weight')
    scores = {a: torch.tensor([0.1, 0.5]), b: torch.tensor([0.9, 0.3, 0.7])}
    # pooled 0.1 0.3 0.5 0.7 0.9: 40th percentile 0.42 (freeze above), 10th 0.18 (prune at/below)
    states = partition.decide(scores, 40, 10)
    assert states['G.a'].tolist() == [PRUNED, FROZEN]
    assert states['G.b'].tolist() == [FROZEN, TUNED, FROZEN]
    again = partition.decide({a: torch.tensor([0.8, 0.5]), b: torch.tensor([0.9, 0.3, 0.7])},
                             40, 10, previous=states)
    assert again['G.a'][0] == PRUNED                # important now, but pruned for good
    assert again['G.b'].tolist() == [FROZEN, PRUNED, FROZEN]


def test_importance_is_the_row_mean_averaged_with_the_counted_bias():
    unit = Unit('D.b8.conv0', 'd_conv', 'D.b8.conv0.weight', 'D.b8.conv0.bias')
    fisher = {'D.b8.conv0.weight': torch.tensor([[[[1.0]], [[3.0]]], [[[0.0]], [[0.0]]]]),
              'D.b8.conv0.bias': torch.tensor([2.0, 4.0])}
    assert partition.importance([unit], fisher)[unit].tolist() == [2.0, 2.0]


def test_gradient_masks_zero_masked_rows_and_pause():
    param = torch.nn.Parameter(torch.ones([3, 2]))
    masks = GradientMasks()
    masks.watch('p', param)
    masks.masks['p'] = partition.row_mask(torch.tensor([TUNED, FROZEN, PRUNED], dtype=torch.int8),
                                          param)
    (param * 2).sum().backward()
    assert param.grad.tolist() == [[2, 2], [0, 0], [0, 0]]
    with masks.paused():
        grad, = torch.autograd.grad((param * 2).sum(), [param])
    assert grad.abs().min() == 2
    masks.remove()


def train(tiny, outdir, *args, iters=5):
    data, source = tiny
    return CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                     str(outdir), '--iters', str(iters), '--tick', '0.002',
                                     '--snap', '1', '--plugin', 'rick', *QUICK, *args])


def run_dir(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)


def rows(net, unit_name, mask):
    return net.get_parameter(unit_name.split('.', 1)[1])[mask]


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    """3 iterations: warm-up (0), one estimate (1), then training under it (1, 2)."""
    root = tmp_path_factory.mktemp('rick')
    result = train(tiny, root / 'run', '--rick-fisher-freq', '100', iters=3)
    assert result.exit_code == 0, result.output
    snapshot = HP.snapshot_path(run_dir(root / 'run'))
    exported = CliRunner().invoke(main, ['export', '--network', snapshot, '--out',
                                         str(root / 'G.pt')])
    return dict(snapshot=snapshot, exported=exported, export=str(root / 'G.pt'))


def test_frozen_filters_keep_their_values_pruned_are_zero_tuned_move(trained, tiny):
    data, source = stylegan2_ada.load(trained['snapshot']), stylegan2_ada.load(tiny[1])
    state = data['gda']['plugins'][0]['state']
    assert state['updates'] == 1
    from gda_core.filters import units
    moved = {'G': 0, 'D': 0}
    counts = partition.counts(state['states'])
    assert counts['pruned'] > 0 and counts['frozen'] > 0 and counts['tuned'] > 0
    for unit in units(data['G'], data['D']):
        s = state['states'][unit.layer]
        nets = [data['G'], data['G_ema']] if unit.network == 'G' else [data['D']]
        for name in (unit.weight, unit.bias):
            if name is None:
                continue
            before = rows(source[unit.network], name, s == FROZEN)
            for net in nets:
                assert rows(net, name, s == PRUNED).abs().sum() == 0, (unit.layer, name)
            assert torch.equal(rows(nets[0], name, s == FROZEN), before), (unit.layer, name)
            tuned = s == TUNED
            moved[unit.network] += int(not torch.equal(rows(nets[0], name, tuned),
                                                       rows(source[unit.network], name, tuned)))
    assert moved['G'] > 0 and moved['D'] > 0
    # never trained: G's mapping, 4x4 block and toRGB, D's fromRGB
    assert torch.equal(data['G'].mapping.fc0.weight, source['G'].mapping.fc0.weight)
    assert torch.equal(data['G'].synthesis.b16.torgb.weight, source['G'].synthesis.b16.torgb.weight)
    assert torch.equal(data['D'].b16.fromrgb.weight, source['D'].b16.fromrgb.weight)


def test_export_and_generate_keep_the_pruned_filters_at_zero(trained):
    assert trained['exported'].exit_code == 0, trained['exported'].output
    data = stylegan2_ada.load(trained['snapshot'])
    plain = stylegan2_ada.load(trained['export'])['G_ema']
    state = data['gda']['plugins'][0]['state']['states']
    for layer, s in state.items():
        if layer.startswith('G.'):
            weight = plain.get_submodule(layer.split('.', 1)[1]).weight
            assert weight[s == PRUNED].abs().sum() == 0
            assert torch.equal(weight, data['G_ema'].get_submodule(layer.split('.', 1)[1]).weight)


def test_warm_up_trains_only_d_epilogue(tiny, tmp_path):
    result = train(tiny, tmp_path, '--rick-warmup', '5', iters=2)
    assert result.exit_code == 0, result.output
    data, source = stylegan2_ada.load(HP.snapshot_path(run_dir(tmp_path))), stylegan2_ada.load(tiny[1])
    assert data['gda']['plugins'][0]['state'] == dict(updates=0, states=None)
    for name, value in source['G'].named_parameters():
        assert torch.equal(data['G'].get_parameter(name), value), name
    for name, value in source['D'].named_parameters():
        same = torch.equal(data['D'].get_parameter(name), value)
        assert same != name.startswith('b4.'), name


def test_resume_across_an_estimate_is_exact(tiny, tmp_path):
    assert train(tiny, tmp_path / 'straight').exit_code == 0
    assert train(tiny, tmp_path / 'half', iters=3).exit_code == 0
    half = run_dir(tmp_path / 'half')
    resumed = CliRunner().invoke(main, ['train', '--resume', half, '--iters', '5'])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(HP.snapshot_path(run_dir(tmp_path / 'straight')), weights_only=True)
    b = torch.load(HP.snapshot_path(half), weights_only=True)
    assert b['gda']['loop']['iteration'] == 5
    for key in ('G', 'D', 'G_ema'):
        for name, value in a[key]['state_dict'].items():
            assert torch.equal(value, b[key]['state_dict'][name]), (key, name)
    sa, sb = a['gda']['plugins'][0]['state'], b['gda']['plugins'][0]['state']
    assert sa['updates'] == sb['updates'] == 2
    assert all(torch.equal(sa['states'][k], sb['states'][k]) for k in sa['states'])


def test_rick_conflicts_with_a_plugin_that_freezes_what_it_partitions(tiny, tmp_path):
    result = train(tiny, tmp_path, '--plugin', 'adafm', iters=1)
    assert result.exit_code == 2 and "'rick' requires" in result.output, result.output
