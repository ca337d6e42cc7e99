"""Precision/recall (k = 3) on toy manifolds: circles, half circles and far-away clusters."""

import math

import pytest
import torch

from gda_core.metrics.precision_recall import knn_radii, precision_recall
from stylegan2_ada.errors import UserError


def _circle(n, start=0.0, stop=2 * math.pi, seed=0, centre=(0.0, 0.0)):
    angles = start + (stop - start) * torch.rand(n, generator=torch.Generator().manual_seed(seed))
    return torch.stack([torch.cos(angles) + centre[0], torch.sin(angles) + centre[1]], 1)


def test_radii_are_the_distance_to_the_third_neighbour_other_than_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # neighbours of 0: 1, 3, 6 -> 6; of 1: 0 (1), 3 (2), 6 (5) -> 5; of 10: 6, 3, 1 -> 9
    assert knn_radii(points, 3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]


def test_same_manifold_gives_full_precision_and_recall():
    precision, recall = precision_recall(_circle(400, seed=1), _circle(400, seed=2))
    assert precision > 0.95 and recall > 0.95


def test_mode_dropping_lowers_recall_not_precision():
    real = _circle(400, seed=1)
    half = _circle(400, 0.0, math.pi, seed=2)   # the generator covers half of the circle
    precision, recall = precision_recall(real, half)
    assert precision > 0.95
    assert recall == pytest.approx(0.5, abs=0.06)


def test_off_manifold_samples_lower_precision_not_recall():
    real = _circle(400, seed=1)
    mixed = torch.cat([_circle(300, seed=2), _circle(100, seed=3, centre=(5.0, 5.0))])
    precision, recall = precision_recall(real, mixed)
    assert precision == pytest.approx(0.75, abs=0.05)
    assert recall > 0.95
    assert precision_recall(real, _circle(400, seed=2, centre=(10.0, 0.0))) == (0.0, 0.0)


def test_needs_more_points_than_k():
    with pytest.raises(UserError, match='more than 3'):
        precision_recall(_circle(3), _circle(50))
