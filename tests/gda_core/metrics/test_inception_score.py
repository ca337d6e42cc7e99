"""Inception Score: 1 for uninformative predictions, K for confident predictions spread over K
classes; the detector's probability and logit conventions give the same score."""

import pytest
import torch

from gda_core.metrics.inception_score import inception_score
from stylegan2_ada.detectors import inception_probabilities
from stylegan2_ada.errors import UserError


def test_uniform_predictions_score_one():
    mean, std = inception_score(torch.full([100, 8], 1 / 8))
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_predictions_over_k_classes_score_k():
    labels = torch.arange(200) % 5
    probs = torch.nn.functional.one_hot(labels, 8).double()   # exact zeros: xlogy keeps them finite
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-9)
    collapsed = torch.nn.functional.one_hot(torch.zeros(200, dtype=torch.long), 8).double()
    assert inception_score(collapsed)[0] == pytest.approx(1.0)


def test_splits_and_minimum_count():
    probs = torch.rand(40, 6).softmax(1)
    by_hand = []
    for part in probs.double().chunk(4):
        marginal = part.mean(0, keepdim=True)
        by_hand.append(torch.exp((part * (part.log() - marginal.log())).sum(1).mean()))
    assert inception_score(probs, splits=4)[0] == pytest.approx(float(torch.stack(by_hand).mean()))
    with pytest.raises(UserError, match='at least 10'):
        inception_score(probs[:9])


def test_probability_and_logit_detectors_agree(standins):
    images = torch.randint(0, 256, [6, 3, 16, 16], dtype=torch.uint8)
    probabilities = inception_probabilities(standins.script(standins.Inception()), images)
    from_logits = inception_probabilities(standins.script(standins.Inception(logits=True)), images)
    assert torch.allclose(probabilities.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(probabilities, from_logits, atol=1e-6)
