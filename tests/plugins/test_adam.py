"""adam: the kernel modulation (identity at init, rank one, kept rows frozen), the ranking of the
probed Fisher against a hand-computed case, and `gda train --plugin adam` end to end on tiny
networks: cached probing, the partition in the snapshot, exact resume, export folding."""

import copy
import os

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main
from gda_core.filters import Unit
from gda_core.generate import open_model, render
from gda_plugins.adam import decide, importance
from gda_plugins.adam.layers import g_layers
from gda_plugins.adam.modulation import KernelModulation, fold_into
from stylegan2_ada.reparam import set_weight_reparam

from gda_testkit import plugins as HP

QUICK = ['--adam-probe-iters', '2', '--adam-fisher-samples', '3']


def test_modulation_is_the_identity_at_init_and_rank_one_after():
    weight = torch.randn([4, 3, 3, 3], dtype=torch.float64)
    mod = KernelModulation(weight.shape).double()
    assert torch.allclose(mod(weight), weight, rtol=1e-12, atol=0)   # 1e-7 * 1e-7 scale
    with torch.no_grad():
        mod.u.copy_(torch.arange(27.0) / 27)
        mod.v.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
        mod.keep.copy_(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    expected = weight * (1 + torch.outer(mod.v, mod.u).reshape(weight.shape))
    out = mod(weight)
    assert torch.equal(out[1], weight[1])                  # a fine-tuned filter is not modulated
    assert torch.allclose(out[[0, 2, 3]], expected[[0, 2, 3]])


def test_kept_filters_get_no_gradient_the_fine_tuned_do():
    weight = torch.randn([3, 2, 1, 1], requires_grad=True)
    mod = KernelModulation(weight.shape)
    mod.keep.copy_(torch.tensor([1.0, 0.0, 1.0]))
    mod(weight).square().sum().backward()
    assert weight.grad[[0, 2]].abs().sum() == 0 and weight.grad[1].abs().sum() > 0
    assert mod.v.grad is not None and mod.u.grad is not None


def test_ranking_of_the_probed_fisher_by_hand():
    a, b = Unit('G.a', 'g_conv', 'G.a.weight'), Unit('G.b', 'g_conv', 'G.b.weight')
    fc = Unit('G.c', 'g_fc', 'G.c.weight', 'G.c.bias')
    fisher = {'G.a.u': torch.tensor([1.0, 3.0]), 'G.a.v': torch.tensor([0.0, 1.0, 2.0]),
              'G.b.u': torch.tensor([0.0]), 'G.b.v': torch.tensor([5.0, 1.0]),
              'G.c.u': torch.tensor([2.0, 2.0]), 'G.c.v': torch.tensor([0.0, 2.0]),
              'G.c.bias': torch.tensor([2.0, 0.0])}
    scores = importance([a, b, fc], fisher)
    # conv: mean(F_u) + F_v -> a [2, 3, 4], b [5, 1]; fc: (mean(F_u) + F_v + F_b) / 2 -> [2, 2]
    assert scores[a].tolist() == [2, 3, 4] and scores[b].tolist() == [5, 1]
    assert scores[fc].tolist() == [2, 2]
    keep = decide(scores, 50)   # pooled conv median 3 (fc has its own pool, median 2)
    assert keep[a].tolist() == [False, False, True] and keep[b].tolist() == [True, False]
    assert keep[fc].tolist() == [False, False]                     # strictly above the cut


def train(tiny, outdir, *args, iters=3):
    data, source = tiny
    return CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                     str(outdir), '--iters', str(iters), '--tick', '0.004',
                                     '--snap', '1', '--plugin', 'adam', *QUICK, *args])


def run_dir(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp('adam')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('GDA_CACHE_DIR', str(root / 'cache'))
        first = train(tiny, root / 'a')
        second = train(tiny, root / 'b', '--seed', '0')
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    snapshot = HP.snapshot_path(run_dir(root / 'a'))
    exported = CliRunner().invoke(main, ['export', '--network', snapshot, '--out',
                                         str(root / 'G.pt')])
    return dict(root=root, snapshot=snapshot, second=HP.snapshot_path(run_dir(root / 'b')),
                exported=exported, export=str(root / 'G.pt'), cache=root / 'cache')


def test_probing_runs_once_per_source_and_target(trained):
    first = stylegan2_ada.load(trained['snapshot'])['gda']['plugins'][0]['state']
    second = stylegan2_ada.load(trained['second'])['gda']['plugins'][0]['state']
    assert not first['cached'] and second['cached']
    assert first['probe_key'] == second['probe_key']
    assert len(os.listdir(trained['cache'] / 'gda-adam')) == 1
    for layer, mask in first['keep'].items():
        assert torch.equal(mask, second['keep'][layer])


def test_kept_filters_stay_at_the_source_fine_tuned_ones_move(trained, tiny):
    data = stylegan2_ada.load(trained['snapshot'])
    source = stylegan2_ada.load(tiny[1])
    keep = data['gda']['plugins'][0]['state']['keep']
    assert 0 < sum(int(m.sum()) for m in keep.values()) < sum(m.numel() for m in keep.values())
    moved = 0
    for layer, mask in keep.items():
        net = layer.split('.')[0]
        name = layer.split('.', 1)[1] + '.weight'
        after = data[net].get_parameter(name)
        before = source[net].get_parameter(name)
        kept = mask.bool()
        assert torch.equal(after[kept], before[kept]), layer
        moved += int((after[~kept] != before[~kept]).any())
    assert moved > 0
    # unranked weights (mapping, toRGB, D fromRGB) are frozen; they are modulated instead
    assert torch.equal(data['G'].mapping.fc0.weight, source['G'].mapping.fc0.weight)
    assert torch.equal(data['D'].b16.fromrgb.weight, source['D'].b16.fromrgb.weight)
    modules = data['gda']['loop']['modules']
    assert modules['param_groups/adam/modulation_G']['G_mapping_fc0.u'].abs().sum() > 0


def test_export_folds_the_modulation_into_plain_weights(trained):
    assert trained['exported'].exit_code == 0, trained['exported'].output
    plain = stylegan2_ada.load(trained['export'])['G_ema']
    model = open_model(trained['snapshot'])
    z = torch.randn([3, plain.z_dim], generator=torch.Generator().manual_seed(1))
    expected = render(model, z)
    got = plain(z, torch.zeros([3, 0]), noise_mode='const')
    assert torch.allclose(got, expected, atol=1e-5)
    assert 'adam' in trained['exported'].output


def test_folded_weights_render_what_the_modulated_generator_renders():
    G, _ = HP.tiny_networks()
    modulated, folded = copy.deepcopy(G), copy.deepcopy(G)
    generator = torch.Generator().manual_seed(0)
    for path in g_layers(G):
        sub = path.split('.', 1)[1]
        mod = KernelModulation(G.get_submodule(sub).weight.shape)
        with torch.no_grad():   # far from the identity, some filters fine-tuned
            mod.u.copy_(torch.randn(mod.u.shape, generator=generator) * 0.3)
            mod.v.copy_(torch.randn(mod.v.shape, generator=generator) * 0.3)
            mod.keep.copy_((torch.rand(mod.keep.shape, generator=generator) < 0.5).float())
        set_weight_reparam(modulated.get_submodule(sub), mod)
        fold_into(folded.get_submodule(sub), mod)
    z = torch.randn([4, G.z_dim], generator=generator)
    c = torch.zeros([4, 0])
    expected = modulated(z, c, noise_mode='const')
    assert not torch.allclose(expected, G(z, c, noise_mode='const'), atol=1e-2)
    assert torch.allclose(folded(z, c, noise_mode='const'), expected, atol=1e-5)


def test_resume_is_exact(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    assert train(tiny, tmp_path / 'straight', iters=4).exit_code == 0
    assert train(tiny, tmp_path / 'half', iters=2).exit_code == 0
    half = run_dir(tmp_path / 'half')
    resumed = CliRunner().invoke(main, ['train', '--resume', half, '--iters', '4'])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(HP.snapshot_path(run_dir(tmp_path / 'straight')), weights_only=True)
    b = torch.load(HP.snapshot_path(half), weights_only=True)
    assert b['gda']['loop']['iteration'] == 4
    for key in ('G', 'D', 'G_ema'):
        for name, value in a[key]['state_dict'].items():
            assert torch.equal(value, b[key]['state_dict'][name]), (key, name)
    for kind in ('modules', 'twins'):
        for key, state in a['gda']['loop'][kind].items():
            for name, value in state.items():
                assert torch.equal(value, b['gda']['loop'][kind][key][name]), (kind, key, name)
    sa, sb = a['gda']['plugins'][0]['state'], b['gda']['plugins'][0]['state']
    assert all(torch.equal(sa['keep'][k], sb['keep'][k]) for k in sa['keep'])


def test_adam_needs_a_source(tiny, tmp_path):
    data, _ = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', 'none', '--outdir',
                                       str(tmp_path), '--iters', '1', '--plugin', 'adam'])
    assert result.exit_code == 2 and 'adam modulates a pretrained GAN' in result.output
