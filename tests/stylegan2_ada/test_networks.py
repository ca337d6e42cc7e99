"""Our networks against NVIDIA's: state_dict keys/shapes, recorded outputs, and behaviour."""

import json
import pathlib

import numpy as np
import pytest
import torch

from stylegan2_ada import networks
from stylegan2_ada.persistence import registered_class

DATA = pathlib.Path(__file__).resolve().parents[1] / 'data'
KEYS = json.loads((DATA / 'stylegan2-ada-state-dict-keys.json').read_text())
CONFIGS = sorted(name for name, value in KEYS.items() if isinstance(value, dict))
GOLDEN = ['tiny32_skip_resnet', 'tiny32_cond_orig_freeze2']


def kwargs_from_keys(name):
    """Constructor kwargs for one configuration of the keys file (dims read from its shapes)."""
    entry = KEYS[name]
    cfg, g_keys = entry['config'], entry['G']
    w_dim = g_keys['synthesis.b4.conv1.affine.weight'][1]
    z_dim = g_keys['mapping.fc0.weight'][1] - (w_dim if cfg['c_dim'] > 0 else 0)
    common = dict(img_resolution=cfg['res'], img_channels=3)
    G_kwargs = dict(z_dim=z_dim, c_dim=cfg['c_dim'], w_dim=w_dim, **common,
                    mapping_kwargs=dict(num_layers=cfg['map']),
                    synthesis_kwargs=dict(channel_base=cfg['cbase'], channel_max=cfg['cmax'],
                                          architecture=cfg['arch_g']))
    D_kwargs = dict(c_dim=cfg['c_dim'], architecture=cfg['arch_d'], channel_base=cfg['cbase'],
                    channel_max=cfg['cmax'], **common)
    return G_kwargs, D_kwargs


def shapes(module):
    return [(key, list(value.shape)) for key, value in module.state_dict().items()]


@pytest.fixture(scope='module')
def built():
    cache = {}

    def build(name):
        if name not in cache:
            G_kwargs, D_kwargs = kwargs_from_keys(name)
            cache[name] = networks.Generator(**G_kwargs), networks.Discriminator(**D_kwargs)
        return cache[name]
    return build


@pytest.mark.parametrize('name', CONFIGS)
def test_state_dict_keys_and_shapes_match_nvidia(built, name):
    G, D = built(name)
    assert shapes(G) == list(KEYS[name]['G'].items())
    assert shapes(D) == list(KEYS[name]['D'].items())


@pytest.mark.parametrize('name', CONFIGS)
def test_parameter_counts_and_num_ws_match_nvidia(built, name):
    G, D = built(name)
    assert sum(p.numel() for p in G.parameters()) == KEYS[name]['G_params']
    assert sum(p.numel() for p in D.parameters()) == KEYS[name]['D_params']
    assert G.num_ws == G.mapping.num_ws == KEYS[name]['G_num_ws']


def load_golden(name):
    data = torch.load(DATA / f'{name}.pt', weights_only=True)
    G = networks.Generator(**data['G_kwargs']).eval()
    D = networks.Discriminator(**data['D_kwargs']).eval()
    G.load_state_dict(data['G_state'])
    D.load_state_dict(data['D_state'])
    return G, D, data


def max_diff(a, b):
    return (a.detach() - b).abs().max().item()


@pytest.mark.parametrize('name', GOLDEN)
def test_reproduces_nvidia_outputs(name):
    G, D, data = load_golden(name)
    z, c = data['z'], data['c']
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7)
        diffs = {
            'ws_psi07': max_diff(ws, data['ws_psi07']),
            'ws_psi05_cutoff3': max_diff(G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=3),
                                         data['ws_psi05_cutoff3']),
            'img_psi07_const': max_diff(G.synthesis(data['ws_psi07'], noise_mode='const'),
                                        data['img_psi07_const']),
            'img_psi07_none': max_diff(G.synthesis(data['ws_psi07'], noise_mode='none'),
                                       data['img_psi07_none']),
            'img_psi1_const': max_diff(G(z, c, truncation_psi=1, noise_mode='const'),
                                       data['img_psi1_const']),
            'D_logits': max_diff(D(data['img_psi07_const'], c),
                                 data['D_logits_on_img_psi07_const']),
        }
    print(name, diffs)
    assert max(diffs.values()) < 1e-5, diffs


@pytest.mark.parametrize('name', GOLDEN)
def test_training_path_matches_inference_path(name):
    # Training uses the non-fused modulated conv; it must compute the same function.
    G, _, data = load_golden(name)
    G.train()
    with torch.no_grad():
        img = G.synthesis(data['ws_psi07'], noise_mode='const')
    assert max_diff(img, data['img_psi07_const']) < 1e-5


def test_frozen_layers_are_buffers_under_the_same_names():
    G, D, data = load_golden('tiny32_cond_orig_freeze2')
    buffers = dict(D.named_buffers())
    params = dict(D.named_parameters())
    # 'orig': the first block holds fromrgb, conv0, conv1 -> layers 0 and 1 are frozen.
    for key in ['b32.fromrgb.weight', 'b32.fromrgb.bias', 'b32.conv0.weight', 'b32.conv0.bias']:
        assert key in buffers and key not in params
    assert 'b32.conv1.weight' in params


@pytest.mark.parametrize('architecture,frozen_first_block', [
    ('resnet', ['fromrgb', 'conv0', 'conv1', 'skip']), ('skip', ['fromrgb', 'conv0', 'conv1']),
    ('orig', ['fromrgb', 'conv0', 'conv1'])])
def test_freeze_layers_counts_layers_like_nvidia(architecture, frozen_first_block):
    n = len(frozen_first_block) + 1   # the whole first block and one layer of the next
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3,
                               architecture=architecture, channel_base=256, channel_max=16,
                               block_kwargs=dict(freeze_layers=n))
    frozen = {name.rsplit('.', 1)[0] for name, _ in D.named_buffers() if name.endswith('.weight')}
    expected = {f'b16.{layer}' for layer in frozen_first_block}
    expected.add('b8.fromrgb' if architecture == 'skip' else 'b8.conv0')
    assert frozen == expected
    assert D.b16.num_layers == len(frozen_first_block)


def tiny_G(**synthesis_kwargs):
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=128, channel_max=16,
                                                 **synthesis_kwargs))
    for name, param in G.named_parameters():
        if name.endswith('noise_strength'):
            param.data.fill_(0.5)
    return G.eval()


def test_truncation():
    G = tiny_G()
    G.mapping.w_avg.normal_()
    z = torch.randn([3, 8])
    w = G.mapping(z, None)
    assert torch.allclose(G.mapping(z, None, truncation_psi=0), G.mapping.w_avg.expand_as(w))
    half = G.mapping(z, None, truncation_psi=0.5)
    assert torch.allclose(half, G.mapping.w_avg + 0.5 * (w - G.mapping.w_avg), atol=1e-6)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], half[:, :2]) and torch.allclose(cut[:, 2:], w[:, 2:])


def test_w_avg_tracks_only_in_training_mode():
    G = tiny_G()
    z = torch.randn([5, 8])
    G.mapping(z, None)
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.train()
    w = G.mapping(z, None)[:, 0].detach()
    assert torch.allclose(G.mapping.w_avg, w.mean(0) * (1 - 0.995), atol=1e-7)


def test_noise_modes():
    G = tiny_G()
    ws = G.mapping(torch.randn([2, 8]), None)
    const_a = G.synthesis(ws, noise_mode='const')
    assert torch.equal(const_a, G.synthesis(ws, noise_mode='const'))
    none = G.synthesis(ws, noise_mode='none')
    assert torch.equal(none, G.synthesis(ws, noise_mode='none'))
    assert not torch.allclose(none, const_a)
    assert not torch.allclose(G.synthesis(ws, noise_mode='random'),
                              G.synthesis(ws, noise_mode='random'))
    with pytest.raises(ValueError, match='noise_mode'):
        G.synthesis(ws, noise_mode='fixed')


@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
def test_generator_features(architecture):
    G = tiny_G(architecture=architecture)
    z = torch.randn([2, 8])
    img, feats = G(z, None, noise_mode='const', return_features=True)
    assert torch.equal(img, G(z, None, noise_mode='const'))
    assert list(feats) == ['b4.conv1', 'b4', 'b8.conv0', 'b8.conv1', 'b8', 'b16.conv0',
                           'b16.conv1', 'b16']
    assert G.synthesis.layer_names == ['b4.conv1', 'b8.conv0', 'b8.conv1', 'b16.conv0', 'b16.conv1']
    for name, feat in feats.items():
        res = int(name.split('.')[0][1:])
        assert feat.dtype == torch.float32, name
        assert feat.shape == (2, min(128 // res, 16), res, res), name
    if architecture == 'resnet':   # block output = skip + conv1, not conv1 alone
        assert not torch.allclose(feats['b8'], feats['b8.conv1'])
    else:
        assert torch.equal(feats['b8'], feats['b8.conv1'])


def test_generator_feature_subset_and_gradients():
    G = tiny_G()
    ws = G.mapping(torch.randn([2, 8]), None)
    img, feats = G.synthesis(ws, noise_mode='none', return_features=['b8.conv1'])
    assert list(feats) == ['b8.conv1']
    feats['b8.conv1'].square().sum().backward()
    assert G.synthesis.b8.conv0.weight.grad is not None
    assert G.synthesis.b16.conv1.weight.grad is None
    with pytest.raises(ValueError, match='unknown feature'):
        G.synthesis(ws, return_features=['b8.conv2'])


@pytest.mark.parametrize('architecture', ['resnet', 'skip', 'orig'])
def test_discriminator_features(architecture):
    torch.manual_seed(0)
    D = networks.Discriminator(c_dim=2, img_resolution=16, img_channels=3,
                               architecture=architecture, channel_base=128, channel_max=16)
    img, c = torch.randn([4, 3, 16, 16]), torch.randn([4, 2])
    logits, feats = D(img, c, return_features=True)
    assert torch.equal(logits, D(img, c)) and logits.shape == (4, 1)
    assert {name: tuple(f.shape) for name, f in feats.items()} == {
        'b16': (4, 16, 8, 8), 'b8': (4, 16, 4, 4), 'b4.conv': (4, 16, 4, 4), 'b4.fc': (4, 16)}
    assert list(feats) == D.feature_names


def test_conditional_generator_uses_labels():
    G = networks.Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=1,
                           synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    z = torch.randn([2, 8])
    c0, c1 = torch.eye(3)[[0, 0]], torch.eye(3)[[1, 1]]
    assert not torch.allclose(G(z, c0, noise_mode='const'), G(z, c1, noise_mode='const'))
    assert G(z, c0).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match=r'c has shape \[2, 2\], expected \[N, 3\]'):
        G(z, torch.zeros([2, 2]))


def test_minibatch_std_group():
    layer = networks.MinibatchStdLayer(group_size=2)
    x = torch.tensor([1.0, 3.0, 5.0, 9.0]).reshape(4, 1, 1, 1)
    out = layer(x)
    # Groups interleave samples: {0, 2} and {1, 3}: std 2 and 3.
    assert torch.allclose(out[:, 1].flatten(), torch.tensor([2.0, 3.0, 2.0, 3.0]), atol=1e-4)
    with pytest.raises(ValueError, match='not divisible'):
        networks.MinibatchStdLayer(group_size=4)(torch.zeros([6, 1, 1, 1]))


def test_init_kwargs_recorded_and_classes_registered():
    G = tiny_G()
    assert G.init_kwargs['img_resolution'] == 16
    assert G.init_kwargs['synthesis_kwargs'] == dict(channel_base=128, channel_max=16)
    clone = registered_class('Generator')(**G.init_kwargs)
    assert shapes(clone) == shapes(G)
    for name in ['Generator', 'Discriminator', 'MappingNetwork', 'SynthesisNetwork',
                 'SynthesisLayer', 'Conv2dLayer', 'FullyConnectedLayer']:
        assert registered_class(name) is getattr(networks, name)


def test_invalid_resolution():
    with pytest.raises(ValueError, match='power of two'):
        networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=24, img_channels=3)


def test_fp16_blocks_stay_fp32_on_cpu():
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           synthesis_kwargs=dict(channel_base=128, channel_max=16,
                                                 num_fp16_res=2, conv_clamp=256))
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    img, feats = G(torch.randn([2, 8]), None, return_features=True)
    assert img.dtype == torch.float32 and all(f.dtype == torch.float32 for f in feats.values())
    assert np.isfinite(img.detach().numpy()).all()
