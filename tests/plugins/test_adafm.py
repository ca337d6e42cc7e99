"""adafm: W' = gamma * W + beta on the frozen general part, identity at init, only the specific part
and gamma/beta train (after the delay), and `gda export` folds the modulation into plain weights."""

import copy

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import generate
from gda_core.cli import main
from gda_core.run_context import RunContext
from gda_plugins import adafm
from gda_plugins.adafm import specific
from gda_plugins.adafm.modulation import FilterModulation
from stylegan2_ada.reparam import set_weight_reparam

from gda_testkit import plugins as HP


GROUP = 'param_groups/adafm/modulation'


def test_modulation_is_gamma_times_w_plus_beta_per_channel_pair():
    weight = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    f = FilterModulation(2, 3)
    assert torch.equal(f(weight), weight)                       # identity at init, bit for bit
    with torch.no_grad():
        f.gamma.copy_(torch.tensor([[1., 2., 3.], [-1., 0., 0.5]]))
        f.beta.copy_(torch.tensor([[0., 10., 0.], [1., 2., 3.]]))
    out = f(weight)
    # Hand-computed: filter (o, i) is gamma[o, i] * W[o, i] + beta[o, i] on all k x k taps.
    assert torch.equal(out[0, 1], 2 * weight[0, 1] + 10)
    assert torch.equal(out[1, 0], -weight[1, 0] + 1)
    assert torch.equal(out[1, 1], torch.full([2, 2], 2.))
    assert torch.equal(out[1, 2], 0.5 * weight[1, 2] + 3)
    out.sum().backward()
    assert torch.equal(f.gamma.grad, weight.sum(dim=[2, 3]))    # d/dgamma = sum of the taps
    assert torch.equal(f.beta.grad, torch.full([2, 3], 4.))     # d/dbeta = k * k


def _run(G, D, **options):
    run = RunContext('train', G=G, D=D, G_s=G)
    values = dict(g_res=None, d_layers=4, specific='fresh', torgb=False, delay=0, lr=None)
    values.update(options)
    return run.add_plugin('adafm', values)


def test_general_part_defaults_to_the_slides_g4d2_and_identity_reproduces_the_source():
    G, D = HP.tiny_networks()   # 16 px: resolution / 4 = 4, so every block is general
    run = _run(G, D, g_res=8)
    layers = adafm.weight_reparam(run)
    assert sorted(layers) == ['G.synthesis.b16.conv0', 'G.synthesis.b16.conv1',
                              'G.synthesis.b8.conv0', 'G.synthesis.b8.conv1']
    policy = adafm.freeze_policy(run)
    assert policy.frozen('G.synthesis.b8.conv0.affine.weight') and policy.frozen('G.synthesis.b16.torgb.bias')
    assert not policy.frozen('G.synthesis.b4.conv1.weight') and not policy.frozen('G.mapping.fc0.weight')
    assert policy.frozen('D.b16.skip.weight') and not policy.frozen('D.b8.conv0.weight')
    assert 'G.synthesis.b4.conv1' in adafm.weight_reparam(_run(G, D))   # default 16 / 4: every block
    assert 'G.synthesis.b16.torgb' in adafm.weight_reparam(_run(G, D, g_res=16, torgb=True))

    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(0))
    before = G(z, torch.zeros([3, 0]), noise_mode='const')
    for path, f in layers.items():
        set_weight_reparam(G.get_submodule(path[2:]), f)
    assert torch.equal(G(z, torch.zeros([3, 0]), noise_mode='const'), before)


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    """A 3-iteration adafm run (general part: 8 px and up) and its exported generator."""
    data, source = tiny
    out = tmp_path_factory.mktemp('adafm')
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(out / 'runs'), '--plugin', 'adafm', '--adafm-g-res', '8',
                                       '--iters', '3', '--snap', '1'])
    assert result.exit_code == 0, result.output
    snapshot = HP.snapshot_path(next((out / 'runs').iterdir()))
    exported = CliRunner().invoke(main, ['export', '--network', snapshot, '--out', str(out / 'G.pt')])
    assert exported.exit_code == 0, exported.output
    return dict(source=source, snapshot=snapshot, export=str(out / 'G.pt'), output=result.output,
                export_output=exported.output)


def test_only_the_specific_part_and_gamma_beta_train(trained):
    before = stylegan2_ada.load(trained['source'])
    after = stylegan2_ada.load(trained['snapshot'])
    for net in ('G', 'D'):
        old, new = before[net].state_dict(), after[net].state_dict()
        for key, value in old.items():
            if not value.is_floating_point() or key.endswith(('w_avg', 'noise_const', 'resample_filter')):
                continue
            frozen = (key.startswith(('synthesis.b8.', 'synthesis.b16.')) if net == 'G'
                      else key.startswith('b16.'))
            if key.endswith('noise_strength'):
                continue   # starts at zero and may legitimately stay there
            assert torch.equal(value, new[key]) == frozen, f'{net}.{key}'
    modules = after['gda']['loop']['modules'][GROUP]
    assert set(modules) == {f'{slot}.{name}' for slot in ('b8_conv0', 'b8_conv1', 'b16_conv0', 'b16_conv1')
                            for name in ('gamma', 'beta')}
    assert not torch.equal(modules['b16_conv1.gamma'], torch.ones_like(modules['b16_conv1.gamma']))
    assert not torch.equal(modules['b8_conv0.beta'], torch.zeros_like(modules['b8_conv0.beta']))
    assert 'adafm.modulation' in trained['output']


def fresh_template(G, seed=0):
    """What the official code's specific part starts from: a new generator's random values."""
    torch.manual_seed(specific.fresh_seed(seed))
    return type(G)(**G.init_kwargs).state_dict()


def test_setup_gives_the_specific_part_fresh_random_values_in_g_and_g_ema():
    G, D = HP.tiny_networks()
    source = {k: v.clone() for k, v in G.state_dict().items()}
    run = _run(G, D, g_res=8)
    G_ema = copy.deepcopy(G)
    run._run.attach(None, G_ema)
    adafm.setup(run)
    fresh = fresh_template(G)
    for key, value in G.state_dict().items():
        is_specific = key.startswith(('mapping.', 'synthesis.b4.'))
        assert torch.equal(value, fresh[key] if is_specific else source[key]), key
        assert torch.equal(G_ema.state_dict()[key], value), key
    assert not torch.equal(source['mapping.fc0.weight'], fresh['mapping.fc0.weight'])
    kept = _run(G_source := copy.deepcopy(HP.tiny_networks()[0]), D, g_res=8, specific='source')
    before = copy.deepcopy(G_source.state_dict())
    kept._run.attach(None, copy.deepcopy(G_source))
    adafm.setup(kept)
    assert all(torch.equal(v, before[k]) for k, v in G_source.state_dict().items())


def test_trained_parts_fresh_specific_frozen_general_modulated(trained):
    # After 3 iterations the specific part is within a few Adam steps of its fresh random start
    # and far from the source; the general part is the source's, bit for bit, and modulated.
    source = stylegan2_ada.load(trained['source'])['G'].state_dict()
    after = stylegan2_ada.load(trained['snapshot'])
    G = after['G']
    fresh = fresh_template(G)
    for key, value in G.state_dict().items():
        if not value.is_floating_point() or key.endswith(('resample_filter', 'noise_const')):
            continue
        if key.startswith(('mapping.', 'synthesis.b4.')) and not key.endswith('w_avg'):
            assert (value - fresh[key]).abs().max() < 0.05, key            # fresh, trained
            if fresh[key].numel() > 1 and fresh[key].std() > 0:              # random init
                assert (source[key] - fresh[key]).abs().max() > 0.5, key   # not the source
        elif key.startswith(('synthesis.b8.', 'synthesis.b16.')):
            assert torch.equal(value, source[key]), key                   # frozen
    modulated = after['gda']['loop']['modules'][GROUP]
    assert {key.split('.')[0] for key in modulated} == {'b8_conv0', 'b8_conv1', 'b16_conv0',
                                                         'b16_conv1'}


def test_export_folds_the_modulation_into_plain_weights(trained):
    model = generate.open_model(trained['snapshot'])
    z = torch.randn([4, model.G.z_dim], generator=torch.Generator().manual_seed(1))
    expected = generate.render(model, z)
    plain = stylegan2_ada.load(trained['export'])['G_ema']
    assert getattr(plain.synthesis.b16.conv1, '_weight_reparam', None) is None
    stored = stylegan2_ada.load(trained['snapshot'])['G_ema'].synthesis.b16.conv1.weight
    assert not torch.equal(plain.synthesis.b16.conv1.weight, stored)        # the fold changed W
    images = plain(z, torch.zeros([4, 0]), noise_mode='const')
    assert torch.allclose(images, expected, atol=1e-5)
    assert 'folded in: adafm' in trained['export_output']


def test_gamma_and_beta_wait_for_the_delay(tiny, tmp_path):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'adafm', '--adafm-g-res', '16',
                                       '--adafm-delay', '5', '--iters', '2', '--snap', '1'])
    assert result.exit_code == 0, result.output
    snapshot = stylegan2_ada.load(HP.snapshot_path(next(tmp_path.iterdir())))
    loop = snapshot['gda']['loop']
    for key, value in loop['modules'][GROUP].items():
        assert torch.equal(value, torch.ones_like(value) if key.endswith('gamma') else torch.zeros_like(value)), key
    assert snapshot['gda']['plugins'][0]['options']['delay'] == 5


@pytest.mark.parametrize('flags,message', [
    (['--adafm-g-res', '12'], '--adafm-g-res 12: give one of the synthesis resolutions 4, 8, 16'),
    (['--adafm-d-layers', '99'], '--adafm-d-layers 99: this D has 7 layers (b16.fromrgb ... b8.skip)'),
    (['--adafm-delay', '-1'], '--adafm-delay: must be 0 or more, got -1'),
    (['--adafm-lr', '0'], '--adafm-lr: must be positive, got 0.0'),
])
def test_bad_options_are_one_line_user_errors(tiny, tmp_path, flags, message):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path / 'runs'), '--plugin', 'adafm', '--iters', '1']
                                + flags)
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'runs').exists()


def test_training_from_scratch_has_no_general_part_to_transfer(tiny, tmp_path):
    result = CliRunner().invoke(main, ['train', '--data', tiny[0], '--source', 'none', '--cbase',
                                       '64', '--cmax', '16', '--outdir', str(tmp_path / 'runs'),
                                       '--plugin', 'adafm', '--iters', '1'])
    assert result.exit_code == 2 and 'adafm transfers the general part of a pretrained GAN, so it ' \
        'needs a source' in result.output, result.output
