"""idc's maths against hand computation: cosine similarities -> softmax over the others -> KL,
averaged over N*(N-1) entries; the layer choice that never uses b4.conv1."""

import math

import pytest
import torch

from gda_plugins.idc.distance import (distance_consistency, log_similarity_distributions,
                                      pick_layers)
from gda_plugins.idc.term import resolve_layers
from stylegan2_ada.errors import UserError

A = 1 / math.sqrt(2)


def softmax2(x, y):
    return [math.exp(x) / (math.exp(x) + math.exp(y)), math.exp(y) / (math.exp(x) + math.exp(y))]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def toy():
    """Three samples; samples 0 and 1 use layer 'A' (2-d vectors), sample 2 layer 'B' (2x2 maps,
    flattened). The rows that the picks do not select are decoys: using them changes the value."""
    source = {'A': torch.tensor([[1., 0.], [0., 1.], [1., 1.]]),
              'B': torch.tensor([[1., 0., 0., 0.], [0., 1., 0., 0.], [1., 1., 0., 0.]]).reshape(3, 1, 2, 2)}
    target = {'A': torch.tensor([[1., 0.], [-1., 0.], [0., 2.]]),
              'B': torch.tensor([[1., 0., 0., 0.], [0., 1., 0., 0.], [2., 0., 0., 0.]]).reshape(3, 1, 2, 2)}
    return source, target, ['A', 'A', 'B']


def test_similarity_rows_are_softmaxed_cosines_to_the_others_in_order():
    source, _, picks = toy()
    # Sample 0 (layer A): cos to 1 = 0, cos to 2 = 1/sqrt 2; sample 1: cos to 0 = 0, to 2 = 1/sqrt 2;
    # sample 2 (layer B): cos to 0 = cos to 1 = 1/sqrt 2.
    expected = torch.tensor([softmax2(0, A), softmax2(0, A), [0.5, 0.5]]).log()
    assert torch.allclose(log_similarity_distributions(source, picks), expected, atol=1e-6)


def test_kl_of_a_three_sample_toy_equals_the_hand_computed_value():
    source, target, picks = toy()
    p_01, q_01 = softmax2(0, A), softmax2(-1, 0)     # target rows 0, 1: cos -1 and 0
    p_2, q_2 = [0.5, 0.5], softmax2(1, 0)            # target row 2 (layer B): cos 1 and 0
    official = (2 * kl(p_01, q_01) + kl(p_2, q_2)) / 6   # mean over N (N - 1) = 6 entries
    paper = (2 * kl(q_01, p_01) + kl(q_2, p_2)) / 6
    assert official == pytest.approx(0.0230700, abs=1e-6)   # (2 * 0.00916 + 0.1202) / 6
    assert float(distance_consistency(source, target, picks)) == pytest.approx(official, rel=1e-5)
    assert float(distance_consistency(source, target, picks, 'paper')) == pytest.approx(paper, rel=1e-5)
    # The same number torch's KLDivLoss(log p_target, p_source) with mean reduction gives.
    log_s = log_similarity_distributions(source, picks)
    log_t = log_similarity_distributions(target, picks)
    reference = torch.nn.functional.kl_div(log_t, log_s.exp(), reduction='sum') / log_s.numel()
    assert float(reference) == pytest.approx(official, rel=1e-5)


def test_identical_source_and_target_give_zero_and_scale_does_not_matter():
    torch.manual_seed(0)
    features = {'A': torch.randn(4, 3, 5, 5), 'B': torch.randn(4, 7)}
    picks = ['A', 'B', 'B', 'A']
    assert float(distance_consistency(features, features, picks)) == 0
    scaled = {name: value * 3.5 for name, value in features.items()}   # cosines ignore scale
    assert float(distance_consistency(features, scaled, picks)) == pytest.approx(0, abs=1e-7)
    moved = {name: value + 1 for name, value in features.items()}
    assert float(distance_consistency(features, moved, picks)) > 1e-4


def test_the_loss_is_differentiable_in_the_target_features():
    torch.manual_seed(0)
    source = {'A': torch.randn(4, 6)}                        # rendered without grad by the term
    target = {'A': torch.randn(4, 6, requires_grad=True)}
    distance_consistency(source, target, ['A'] * 4).backward()
    assert target['A'].grad.abs().sum() > 0


def test_bad_arguments_are_refused():
    features = {'A': torch.randn(4, 6)}
    with pytest.raises(ValueError, match='official'):
        distance_consistency(features, features, ['A'] * 4, direction='sideways')
    with pytest.raises(ValueError, match='at least 2'):
        distance_consistency(features, features, ['A'])


LAYERS = ['b4.conv1', 'b8.conv0', 'b8.conv1', 'b16.conv0', 'b16.conv1']


def test_auto_layers_are_all_but_the_first_and_names_or_indices_select_others():
    assert resolve_layers('auto', LAYERS) == LAYERS[1:]
    assert resolve_layers('b16.conv1,1,b16.conv1', LAYERS) == ['b16.conv1', 'b8.conv0']
    assert resolve_layers('0', LAYERS) == ['b4.conv1']     # explicit: the user's choice
    with pytest.raises(UserError, match=r"--idc-layers: 'b32.conv0' is not a layer of this "
                                        r"generator; give names or indices from: b4.conv1 \(0\)"):
        resolve_layers('b8.conv0,b32.conv0', LAYERS)
    with pytest.raises(UserError, match="'7' is not a layer"):
        resolve_layers('7', LAYERS)


def test_layer_picks_are_uniform_over_the_candidates_and_follow_the_rng():
    candidates = LAYERS[1:]
    picks = pick_layers(candidates, 4000, torch.Generator().manual_seed(0))
    counts = {name: picks.count(name) for name in candidates}
    assert set(picks) == set(candidates)                     # b4.conv1 never
    assert all(abs(count / 4000 - 0.25) < 0.03 for count in counts.values())
    again = pick_layers(candidates, 4000, torch.Generator().manual_seed(0))
    assert picks == again
