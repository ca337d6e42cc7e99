"""rosinality/stylegan2-pytorch checkpoints: read safely, same images and logits, written back exactly.

The rosinality networks here are tests/support/gda_testkit/rosinality.py, a re-implementation
written from the facts of rosinality's model.py (its module names give the state_dict keys, its
formulas the forward pass); nothing is downloaded and rosinality's code is not needed.
"""

import argparse
import json
import os
import pathlib

import pytest
import torch

import stylegan2_ada
from stylegan2_ada.checkpoint import save_rosinality
from stylegan2_ada.checkpoint.loader import interpret
from stylegan2_ada.errors import UserError
from stylegan2_ada.networks import Discriminator, Generator

from gda_testkit import rosinality as R

TESTS = pathlib.Path(__file__).resolve().parents[1]
KEYS = json.loads((TESTS / 'data' / 'stylegan2-ada-state-dict-keys.json').read_text())

# The 32 px fixture: rosinality's layout with narrower widths (its own table has 512 up to 32 px).
WIDTHS32 = {4: 64, 8: 64, 16: 64, 32: 32}
TOLERANCE = 1e-4        # README states the largest difference measured here


@pytest.fixture(scope='module')
def nets32():
    return R.networks(32, style_dim=64, n_mlp=8, channels=WIDTHS32)


@pytest.fixture(scope='module')
def loaded32(nets32, tmp_path_factory):
    path = tmp_path_factory.mktemp('ros') / 'rosinality.pt'
    torch.save(R.checkpoint(*nets32), path)
    return stylegan2_ada.load(str(path))


def z_batch(count, dim, seed=1):
    return torch.randn([count, dim], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('psi', [1, 0.7])
@pytest.mark.parametrize('fused', [True, False])
def test_generator_reproduces_rosinality(nets32, loaded32, psi, fused):
    """Same z, the stored noise buffers (noise_mode const), truncation towards the same w_avg."""
    g, _, g_ema = nets32
    z = z_batch(4, 64)
    for theirs, ours in ((g_ema, loaded32['G_ema']), (g, loaded32['G'])):
        with torch.no_grad():
            expected = theirs(z, truncation=psi, truncation_latent=ours.mapping.w_avg[None])
            got = ours(z, None, truncation_psi=psi, noise_mode='const', fused_modconv=fused)
        assert expected.abs().max() > 0.5        # a real image, not a degenerate one
        assert (got - expected).abs().max() < TOLERANCE


@pytest.mark.parametrize('batch', [2, 8])
def test_discriminator_reproduces_rosinality_logits(nets32, loaded32, batch):
    _, d, _ = nets32
    img = torch.randn([batch, 3, 32, 32], generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected, got = d(img), loaded32['D'](img, None)
    assert got.shape == expected.shape == (batch, 1)
    assert (got - expected).abs().max() < TOLERANCE


def test_architecture_and_w_avg_without_latent_avg(nets32, loaded32):
    info = loaded32['rosinality']
    assert loaded32['origin']['format'] == 'rosinality'
    assert (info['size'], info['style_dim'], info['n_mlp'], info['widths']) == (32, 64, 8, WIDTHS32)
    assert info['networks'] == {'g': 'G', 'd': 'D', 'g_ema': 'G_ema'}
    assert isinstance(loaded32['args'], dict) and loaded32['args']['size'] == 32   # Namespace -> dict
    assert set(loaded32['g_optim']) == {'state', 'param_groups'}
    G = loaded32['G_ema']
    assert G.init_kwargs['mapping_kwargs']['lr_multiplier'] == 0.01
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    # No latent_avg: the mean w of 4096 z drawn with seed 0, which is rosinality's mean_latent.
    with torch.no_grad():
        expected = nets32[2].mean_latent(4096, seed=0)[0]
    assert (G.mapping.w_avg - expected).abs().max() < 1e-4


def test_latent_avg_and_a_file_of_g_ema_only(tmp_path, nets32):
    """rosinality's convert_weight.py writes {g_ema, latent_avg}; CDC's snapshots hold g_ema only."""
    g_ema = nets32[2]
    latent_avg = torch.randn([64])
    path = tmp_path / 'converted.pt'
    torch.save({'g_ema': g_ema.state_dict(), 'latent_avg': latent_avg}, path)
    data = stylegan2_ada.load(str(path))
    assert data['G'] is None and data['D'] is None
    assert torch.equal(data['G_ema'].mapping.w_avg, latent_avg)
    assert data['rosinality']['w_avg'] == 'latent_avg in the file'


def test_dataparallel_prefix_bare_state_dict_and_extra_generator(tmp_path, nets32):
    g, d, g_ema = nets32
    prefixed = {f'module.{key}': value for key, value in d.state_dict().items()}
    torch.save({'g_ema': g_ema.state_dict(), 'g_s': g.state_dict(), 'd': prefixed}, tmp_path / 'cdc.pt')
    data = stylegan2_ada.load(str(tmp_path / 'cdc.pt'))
    assert isinstance(data['g_s'], Generator) and isinstance(data['D'], Discriminator)
    assert data['rosinality']['networks'] == {'g_ema': 'G_ema', 'g_s': 'g_s', 'd': 'D'}
    torch.save(g_ema.state_dict(), tmp_path / 'bare.pt')
    assert isinstance(stylegan2_ada.load(str(tmp_path / 'bare.pt'))['G_ema'], Generator)


def test_checkpoint_without_noise_buffers(tmp_path, nets32):
    """Checkpoints of rosinality's early code have no noises.*: fixed ones are drawn, and said so."""
    state = {k: v for k, v in nets32[2].state_dict().items() if not k.startswith('noises.')}
    torch.save({'g_ema': state}, tmp_path / 'old.pt')
    data = stylegan2_ada.load(str(tmp_path / 'old.pt'))
    assert data['rosinality']['noise'] == 'none stored: drawn with seed 0'
    first = data['G_ema'].synthesis.b4.conv1.noise_const
    assert torch.equal(first, stylegan2_ada.load(str(tmp_path / 'old.pt'))['G_ema'].synthesis.b4.conv1.noise_const)


def _one_line_error(path, match):
    with pytest.raises(UserError, match=match) as error:
        stylegan2_ada.load(str(path))
    assert '\n' not in str(error.value)


def test_inconsistent_files_are_one_line_errors(tmp_path, nets32):
    g, d, g_ema = nets32
    cases = {
        'args': (R.checkpoint(g, d, g_ema, size=64), r'args.size is 64 but the tensors are for 32'),
        'latent': (R.checkpoint(g, d, g_ema, latent=512), r'args.latent is 512'),
        'd size': ({'g_ema': g_ema.state_dict(), 'd': R.networks(16, 8, 1, channels={4: 64, 8: 64, 16: 64})[1].state_dict()},
                   r'd is for 16 px images but the generator makes 32 px'),
        'extra key': ({'g_ema': dict(g_ema.state_dict(), **{'convs.0.extra': torch.zeros(1)})},
                      r'rosinality tensors with no place in our network: convs.0.extra'),
        'missing key': ({'g_ema': {k: v for k, v in g_ema.state_dict().items() if k != 'conv1.activate.bias'}},
                        r'lacks conv1.activate.bias \(needed for synthesis.b4.conv1.bias\)'),
        'blur': ({'g_ema': dict(g_ema.state_dict(), **{'convs.0.conv.blur.kernel': torch.ones(4, 4)})},
                 r'convs.0.conv.blur.kernel is not the \[1, 3, 3, 1\] blur kernel'),
        'shape': ({'g_ema': dict(g_ema.state_dict(), **{'conv1.noise.weight': torch.zeros(2)})},
                  r'conv1.noise.weight has shape \(2,\), expected \(1,\)'),
    }
    for name, (data, match) in cases.items():
        torch.save(data, tmp_path / f'{name}.pt')
        _one_line_error(tmp_path / f'{name}.pt', match)


def test_channel_multiplier_nvidia_cannot_hold(tmp_path):
    """Multiplier 4 widens 64 px to 1024 channels, past the 512 of 32 px: no channel_base fits."""
    with torch.device('meta'):
        g = R.Generator(64, 8, 1, channel_multiplier=4)
    torch.save({'g_ema': _zeros_state(g), 'args': argparse.Namespace(channel_multiplier=4)}, tmp_path / 'wide.pt')
    _one_line_error(tmp_path / 'wide.pt', r'channel widths 4:512 8:512 16:512 32:512 64:1024 match no channel '
                                          r'multiplier gda can rebuild')


def test_executable_pickle_content_is_refused_without_running(tmp_path, nets32):
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    data = R.checkpoint(*nets32)
    data['args'] = Payload()
    torch.save(data, tmp_path / 'evil.pt')
    _one_line_error(tmp_path / 'evil.pt', r"outside torch's weights-only allow-list \((posix|nt).system is not "
                                          r'allowed\); nothing from it was run')
    assert not marker.exists()


def _zeros_state(module):
    """A state_dict of zeros with the module's keys and shapes, blur kernels real: cheap to build
    from a module on the meta device."""
    return {key: (R.kernel2d(up='upsample' in key or '.blur.' in key) if key.endswith('kernel')
                  else torch.zeros(value.shape)) for key, value in module.state_dict().items()}


def _shapes(state):
    return [(key, list(value.shape)) for key, value in state.items()]


@pytest.mark.parametrize('multiplier,config', [(2, 'stylegan2_256'), (1, 'paper256')])
def test_256px_key_sets_are_nvidias_and_rosinalitys(tmp_path, multiplier, config):
    """rosinality's 256 px networks become exactly NVIDIA's published layouts (multiplier 2:
    config stylegan2, channel_base 32768; multiplier 1: paper256, 16384), and back."""
    with torch.device('meta'):
        g, d = R.Generator(256, 512, 8, multiplier), R.Discriminator(256, multiplier)
    g_state, d_state = _zeros_state(g), _zeros_state(d)
    file = {'g_ema': g_state, 'd': d_state, 'latent_avg': torch.zeros(512),
            'args': argparse.Namespace(size=256, channel_multiplier=multiplier, latent=512, n_mlp=8)}
    data = interpret('torch', file)[1]     # what load does after torch.load (spares 240 MB of disk)
    assert data['rosinality']['channel_multiplier'] == multiplier
    assert [[k, s] for k, s in _shapes(data['G_ema'].state_dict())] == [list(item) for item in KEYS[config]['G'].items()]
    assert [[k, s] for k, s in _shapes(data['D'].state_dict())] == [list(item) for item in KEYS[config]['D'].items()]
    save_rosinality(tmp_path / 'back.pt', data['G_ema'], D=data['D'])
    back = torch.load(tmp_path / 'back.pt', weights_only=True)
    assert _shapes(back['g_ema']) == _shapes(g_state) and _shapes(back['d']) == _shapes(d_state)


@pytest.mark.parametrize('size,widths', [(16, {4: 32, 8: 32, 16: 16}), (32, WIDTHS32)])
def test_small_key_sets_round_trip_in_rosinality_order(tmp_path, size, widths):
    g, d, g_ema = R.networks(size, style_dim=16, n_mlp=2, channels=widths, seed=5)
    torch.save(R.checkpoint(g, d, g_ema), tmp_path / 'in.pt')
    data = stylegan2_ada.load(str(tmp_path / 'in.pt'))
    save_rosinality(tmp_path / 'out.pt', data['G_ema'], D=data['D'], G=data['G'])
    back = torch.load(tmp_path / 'out.pt', weights_only=True)
    for key, net in (('g', g), ('g_ema', g_ema), ('d', d)):
        assert list(back[key]) == list(net.state_dict())                # rosinality's keys and order
        assert all(torch.equal(back[key][k], v) for k, v in net.state_dict().items())
        fresh = (R.Discriminator(size, channels=widths) if key == 'd'
                 else R.Generator(size, 16, 2, channels=widths))
        fresh.load_state_dict(back[key], strict=True)                   # what rosinality's code does


def tiny_nvidia(lr_multiplier=0.01, seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2, lr_multiplier=lr_multiplier),
                  synthesis_kwargs=dict(channel_base=256, channel_max=32))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
    with torch.no_grad():
        for net in (G, D):
            for name, param in net.named_parameters():
                if name.endswith(('bias', 'noise_strength')):
                    param.normal_(0, 0.2).add_(1 if 'affine' in name else 0)
        G.mapping.w_avg.normal_()
        for name, buffer in G.named_buffers():
            if name.endswith('noise_const'):
                buffer.normal_()
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def test_round_trip_nvidia_rosinality_nvidia(tmp_path):
    G, D = tiny_nvidia()
    notes = save_rosinality(tmp_path / 'ros.pt', G, D=D)
    assert notes == ['channel widths 4:32 8:32 16:16 are no channel multiplier\'s: rosinality\'s own model.py '
                     'loads this file only with its channel table edited (gda reads it as is)']
    raw = torch.load(tmp_path / 'ros.pt', weights_only=True)
    assert set(raw) == {'g_ema', 'g', 'd', 'latent_avg'}
    data = stylegan2_ada.load(str(tmp_path / 'ros.pt'))
    for ours, back in ((G, data['G_ema']), (G, data['G']), (D, data['D'])):
        assert list(back.state_dict()) == list(ours.state_dict())
        assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items())
    assert data['G_ema'].init_kwargs['synthesis_kwargs']['channel_base'] == 256
    # rosinality's forward pass on the written file gives our images and logits.
    ref_g = R.Generator(16, 16, 2, channels={4: 32, 8: 32, 16: 16})
    ref_g.load_state_dict(raw['g_ema'])
    ref_d = R.Discriminator(16, channels={4: 32, 8: 32, 16: 16})
    ref_d.load_state_dict(raw['d'])
    z, img = z_batch(4, 16), torch.randn([4, 3, 16, 16])
    with torch.no_grad():
        assert (ref_g(z, 0.5, raw['latent_avg'][None]) - G(z, None, truncation_psi=0.5, noise_mode='const')
                ).abs().max() < TOLERANCE
        assert (ref_d(img) - D(img, None)).abs().max() < TOLERANCE


def test_mapping_lr_multiplier_is_folded_into_the_weights(tmp_path):
    G, _ = tiny_nvidia(lr_multiplier=0.1)
    save_rosinality(tmp_path / 'ros.pt', G)
    back = stylegan2_ada.load(str(tmp_path / 'ros.pt'))['G_ema']
    assert back.init_kwargs['mapping_kwargs']['lr_multiplier'] == 0.01
    z = z_batch(3, 16)
    with torch.no_grad():
        assert (back(z, None, noise_mode='const') - G(z, None, noise_mode='const')).abs().max() < TOLERANCE


def test_what_rosinality_cannot_express_is_refused(tmp_path):
    conditional = Generator(z_dim=16, c_dim=2, w_dim=16, img_resolution=16, img_channels=3,
                            mapping_kwargs=dict(num_layers=2),
                            synthesis_kwargs=dict(channel_base=256, channel_max=32, architecture='resnet'))
    with pytest.raises(UserError, match=r"conditional \(c_dim 2\).*architecture is 'resnet'"):
        save_rosinality(tmp_path / 'x.pt', conditional)
    G, _ = tiny_nvidia()
    skip_d = Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture='skip',
                           channel_base=256, channel_max=32)
    with pytest.raises(UserError, match=r"discriminator .* architecture is 'skip'; rosinality's is resnet"):
        save_rosinality(tmp_path / 'x.pt', G, D=skip_d)
    assert not (tmp_path / 'x.pt').exists()


@pytest.mark.slow
@pytest.mark.parametrize('size', [32, 64])
def test_rosinalitys_own_widths(size):
    """The README's measurement: rosinality's real widths (512 channels up to 32 px, multiplier 2
    at 64 px), style_dim 512, n_mlp 8. About 20 s (32 px) and 60 s (64 px) on one thread."""
    g, d, g_ema = R.networks(size, style_dim=512, n_mlp=8)
    data = interpret('torch', R.checkpoint(g, d, g_ema, channel_multiplier=2))[1]
    assert data['rosinality']['channel_multiplier'] == 2
    z, img = z_batch(4, 512), torch.randn([4, 3, size, size])
    with torch.no_grad():
        for psi in (1, 0.7):
            expected = g_ema(z, psi, data['G_ema'].mapping.w_avg[None])
            assert (data['G_ema'](z, None, truncation_psi=psi, noise_mode='const') - expected).abs().max() < TOLERANCE
        assert (data['D'](img, None) - d(img)).abs().max() < TOLERANCE
