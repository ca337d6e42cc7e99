"""The network APIs the injection points need: add_conditioning and weight reparam slots."""

import copy

import numpy as np
import pytest
import torch

from stylegan2_ada.extensions import Extensions, ParamGroup
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.reparam import get_weight_reparam, set_weight_reparam
from stylegan2_ada.training_config import resolve
from stylegan2_ada.training_options import TrainingOptions
from stylegan2_ada.training_loop import TrainingLoop


def tiny_G(c_dim=0, architecture='skip'):
    torch.manual_seed(0)
    return Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=128, channel_max=16,
                                           architecture=architecture))


def tiny_D():
    torch.manual_seed(0)
    return Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128,
                         channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2))


class GrayDataset:
    """Two flat gray images without labels (the loop's dataset protocol)."""

    def __len__(self):
        return 2

    def get_label(self, idx):
        return np.zeros([0], np.float32)

    def __getitem__(self, idx):
        return np.full([3, 16, 16], 100, np.uint8), self.get_label(idx)


class Affine(torch.nn.Module):
    """AdaFM-style W' = gamma * W + beta (gamma = 1, beta = 0: the identity at init)."""

    def __init__(self, shape):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(shape[:2]))
        self.beta = torch.nn.Parameter(torch.zeros(shape[:2]))

    def forward(self, weight):
        extra = [1] * (weight.ndim - 2)
        return self.gamma.reshape(*self.gamma.shape, *extra) * weight + \
            self.beta.reshape(*self.beta.shape, *extra)


# -- add_conditioning -----------------------------------------------------------------------------

def test_add_conditioning_keeps_the_output_and_makes_nvidias_conditional_layout():
    G = tiny_G()
    z = torch.randn([4, 16])
    before = G.mapping(z, None)
    G.add_conditioning(5)
    assert G.c_dim == G.mapping.c_dim == 5
    assert G.init_kwargs['c_dim'] == G.mapping.init_kwargs['c_dim'] == 5
    for c in (torch.zeros([4, 5]), torch.eye(5)[:4] * 3):
        after = G.mapping(z, c)
        # fc0's runtime gain depends on its width: the rescaled weights agree up to rounding.
        assert torch.allclose(after, before, rtol=1e-6, atol=1e-6)
    plain = Generator(**G.init_kwargs)   # what a snapshot rebuilds
    assert [(k, v.shape) for k, v in plain.state_dict().items()] == \
        [(k, v.shape) for k, v in G.state_dict().items()]
    plain.load_state_dict(G.state_dict())
    c = torch.randn([4, 5])
    assert torch.equal(plain.mapping(z, c), G.mapping(z, c))
    assert torch.count_nonzero(G.mapping.fc0.weight[:, 16:]) == 0


def test_add_conditioning_trains_the_new_columns_and_refuses_a_conditional_mapping():
    G = tiny_G()
    G.mapping.add_conditioning(3)
    G.mapping.requires_grad_(True)
    G.mapping(torch.randn([4, 16]), torch.eye(3)[[0, 1, 2, 0]]).square().sum().backward()
    assert torch.count_nonzero(G.mapping.fc0.weight.grad[:, 16:]) > 0
    with pytest.raises(ValueError, match='unconditional mapping'):
        G.mapping.add_conditioning(3)
    with pytest.raises(ValueError, match='unconditional mapping'):
        tiny_G(c_dim=2).mapping.add_conditioning(3)


# -- set_weight_reparam ---------------------------------------------------------------------------

LAYERS = ['synthesis.b8.conv0', 'synthesis.b16.torgb', 'synthesis.b8.skip', 'mapping.fc1',
          'synthesis.b4.conv1.affine']


@pytest.mark.parametrize('path', LAYERS)
@pytest.mark.parametrize('training', [True, False])   # non-fused and fused modulated conv
def test_identity_reparam_is_bit_identical_and_keeps_state_dict_keys(path, training):
    G = tiny_G(architecture='resnet' if 'skip' in path else 'skip').train(training)
    z = torch.randn([2, 16])
    before = G(z, None, noise_mode='const')
    keys = list(G.state_dict())
    count = len(list(G.parameters()))
    set_weight_reparam(G.get_submodule(path), Affine(G.get_submodule(path).weight.shape))
    assert torch.equal(G(z, None, noise_mode='const'), before)
    assert list(G.state_dict()) == keys and len(list(G.parameters())) == count


@pytest.mark.parametrize('path', LAYERS)
@pytest.mark.parametrize('training', [True, False])
def test_reparam_equals_writing_f_of_w_into_the_weight(path, training):
    G = tiny_G(architecture='resnet' if 'skip' in path else 'skip').train(training)
    layer = G.get_submodule(path)
    f = Affine(layer.weight.shape)
    with torch.no_grad():
        f.gamma.uniform_(0.5, 1.5)
        f.beta.normal_(0, 0.1)
    folded = copy.deepcopy(G)
    with torch.no_grad():
        folded.get_submodule(path).weight.copy_(f(layer.weight))
    set_weight_reparam(layer, f)
    z = torch.randn([2, 16])
    assert torch.equal(G(z, None, noise_mode='const'), folded(z, None, noise_mode='const'))
    set_weight_reparam(layer, None)
    assert get_weight_reparam(layer) is None


def test_gradients_reach_the_reparam_module_of_a_frozen_layer():
    G, D = tiny_G().requires_grad_(False), tiny_D().requires_grad_(False)
    g_f = Affine(G.synthesis.b16.conv0.weight.shape)
    d_f = Affine(D.b16.conv0.weight.shape)
    set_weight_reparam(G.synthesis.b16.conv0, g_f)
    set_weight_reparam(D.b16.conv0, d_f)
    D(G(torch.randn([2, 16]), None), None).sum().backward()
    for f in (g_f, d_f):
        assert torch.count_nonzero(f.gamma.grad) > 0 and torch.count_nonzero(f.beta.grad) > 0
    with pytest.raises(TypeError, match='SynthesisLayer'):
        set_weight_reparam(G.synthesis.b16, g_f)


def test_G_ema_gets_the_ema_twin_of_the_reparam():
    G, D = tiny_G(), tiny_D()
    f = Affine(G.synthesis.b16.conv0.weight.shape)
    opts, _ = resolve('auto', 16, dict(batch=2))
    opts.update(iters=1, kimg=None, batch_gpu=2, seed=0, aug='noaug', augpipe='bgc', p=None,
                ema_rampup=None, ema_kimg=0.01)
    data = GrayDataset()
    ext = Extensions(weight_reparam=[{'G.synthesis.b16.conv0': f}],
                     param_groups=[ParamGroup('adafm', f, ema=True)])
    loop = TrainingLoop('unused', G, D, data, TrainingOptions(**opts), extensions=ext, log=lambda *a: None)
    twin = get_weight_reparam(loop.G_ema.synthesis.b16.conv0)
    assert get_weight_reparam(G.synthesis.b16.conv0) is f and twin is not f
    assert torch.equal(twin.gamma, f.gamma)
    start = f.gamma.detach().clone()
    beta = 0.5 ** (2 / 10)                       # ema_kimg 0.01 at batch 2
    loop.step()
    assert not torch.equal(f.gamma, start)
    assert torch.allclose(twin.gamma, f.gamma.detach().lerp(start, beta))
