"""genda's pieces against hand-computed values: the adaptor (eq. 3), the training truncation
(eq. 5), the classifier head, the augmentation ramp, and folding the adaptor into the affines."""

import types

import pytest
import torch

from gda_plugins import genda
from gda_plugins.genda.adaptor import AttributeAdaptor, Truncation, fold_adaptor, ws_consumers
from gda_plugins.genda.classifier import AttributeClassifier
from stylegan2_ada.networks import Generator

from gda_testkit import plugins as HP


def test_the_adaptor_starts_as_the_identity_exactly():
    adaptor = AttributeAdaptor(6, 16)
    ws = torch.randn(3, 6, 16)
    assert torch.equal(adaptor(ws), ws)


def test_the_adaptor_scales_and_shifts_each_w_plus_entry():
    adaptor = AttributeAdaptor(2, 3)
    with torch.no_grad():
        adaptor.a.copy_(torch.tensor([[1., 2., 3.], [0., -1., 0.5]]))
        adaptor.b.copy_(torch.tensor([[0., 0., 1.], [5., 5., 5.]]))
    ws = torch.tensor([[[1., 1., 1.], [2., 4., 6.]]])
    assert torch.equal(adaptor(ws), torch.tensor([[[1., 2., 4.], [5., 1., 8.]]]))


def test_truncation_pulls_towards_the_source_average():
    truncation = Truncation(torch.tensor([1., 0.]), 0.7)
    ws = torch.tensor([[[3., 10.]]])
    # w_avg + 0.7 (w - w_avg) = (1 + 0.7 * 2, 0.7 * 10)
    assert torch.allclose(truncation(ws), torch.tensor([[[2.4, 7.0]]]))


def test_the_classifier_is_one_linear_layer_on_b4_fc():
    head = AttributeClassifier(4)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[2., 0., -2., 4.]]))
        head.fc.bias.fill_(0.5)
    feats = {'b4.fc': torch.tensor([[1., 1., 1., 1.]])}
    # Equalised lr: weight gain 1/sqrt(4) = 0.5 -> (2 - 2 + 4) * 0.5 + 0.5
    assert head(torch.zeros(1, 1), feats).item() == pytest.approx(2.5)
    assert sum(p.numel() for p in head.parameters()) == 5


def test_ws_consumers_follow_nvidias_indexing():
    G, _ = HP.tiny_networks()        # 16 px, skip: b4 (conv1, torgb), b8, b16
    names = {id(m): n for n, m in G.synthesis.named_modules()}
    assert [(i, names[id(layer)]) for i, layer in ws_consumers(G.synthesis)] == [
        (0, 'b4.conv1'), (1, 'b4.torgb'), (1, 'b8.conv0'), (2, 'b8.conv1'), (3, 'b8.torgb'),
        (3, 'b16.conv0'), (4, 'b16.conv1'), (5, 'b16.torgb')]
    resnet = Generator(8, 0, 8, 16, 3, mapping_kwargs=dict(num_layers=1),
                       synthesis_kwargs=dict(channel_base=64, channel_max=8, architecture='resnet'))
    names = {id(m): n for n, m in resnet.synthesis.named_modules()}
    assert [names[id(layer)] for _, layer in ws_consumers(resnet.synthesis)][-2:] == \
        ['b16.conv1', 'b16.torgb']
    assert max(i for i, _ in ws_consumers(resnet.synthesis)) == resnet.num_ws - 1


@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
def test_folding_the_adaptor_into_the_affines_reproduces_the_adapted_generator(architecture):
    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8,
                                        architecture=architecture)).eval()
    adaptor = AttributeAdaptor(G.num_ws, G.w_dim)
    with torch.no_grad():
        adaptor.a.copy_(1 + 0.3 * torch.randn_like(adaptor.a))
        adaptor.b.copy_(0.5 * torch.randn_like(adaptor.b))
    ws = G.mapping(torch.randn(4, 8), None)
    expected = G.synthesis(adaptor(ws), noise_mode='const')
    fold_adaptor(G, adaptor.a.detach(), adaptor.b.detach())
    assert torch.allclose(G.synthesis(ws, noise_mode='const'), expected, atol=1e-5)


def fake_run(**core):
    return types.SimpleNamespace(options=dict(aug_max=0.6, ramp_kimg=None), core=core)


def test_the_augmentation_ramps_linearly_to_its_peak_over_the_run():
    probability = genda.augment_p(fake_run(kimg=2.0, iters=None, batch=4))
    at = lambda nimg: probability(types.SimpleNamespace(cur_nimg=nimg))   # noqa: E731
    assert at(0) == 0 and at(500) == pytest.approx(0.15) and at(2000) == pytest.approx(0.6)
    assert at(5000) == pytest.approx(0.6)
    shortest = genda.augment_p(fake_run(kimg=2.0, iters=10, batch=4))     # 40 images first
    assert shortest(types.SimpleNamespace(cur_nimg=20)) == pytest.approx(0.3)
    explicit = fake_run(kimg=2.0, iters=None, batch=4)
    explicit.options['ramp_kimg'] = 0.1
    assert genda.augment_p(explicit)(types.SimpleNamespace(cur_nimg=50)) == pytest.approx(0.3)


def test_it_proposes_its_stop_count_and_learning_rate():
    assert genda.propose_defaults() == {'lr': genda.ADAPTOR_LR, 'kimg': genda.STOP_KIMG}
