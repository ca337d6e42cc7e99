"""KID: NVIDIA's estimator written out, unbiased on known Gaussians (mean 0 for one distribution,
the population MMD^2 for two), where the biased (V-statistic) estimate visibly is not."""

import numpy as np
import pytest

from gda_core.metrics.kid import kernel_inception_distance, mmd2_unbiased
from stylegan2_ada.errors import UserError

DIM = 4


def _kernel(x, y):
    return (np.sum(x * y, axis=-1) / DIM + 1) ** 3


def _biased(x, y):
    def k(a, b):
        return (a @ b.T / a.shape[1] + 1) ** 3
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_mmd2_equals_the_explicit_double_sums():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal([5, DIM]), rng.standard_normal([5, DIM]) + 0.3
    m = len(x)
    within = sum(_kernel(x[i], x[j]) + _kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    cross = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(m))
    assert mmd2_unbiased(x, y) == pytest.approx(within / (m * (m - 1)) - 2 * cross / m ** 2, rel=1e-12)


def _estimates(rng, shift, m, repeats, estimator):
    return np.array([estimator(rng.standard_normal([m, DIM]), rng.standard_normal([m, DIM]) + shift)
                     for _ in range(repeats)])


def test_unbiased_on_one_gaussian_where_the_v_statistic_is_biased():
    rng = np.random.default_rng(1)
    unbiased = _estimates(rng, 0.0, 5, 4000, mmd2_unbiased)
    error = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 3 * error
    biased = _estimates(rng, 0.0, 5, 4000, _biased)
    assert biased.mean() > abs(unbiased.mean()) + 10 * error   # the test would catch a biased estimator


def test_unbiased_on_two_gaussians_matches_the_population_mmd2():
    rng = np.random.default_rng(2)
    shift = np.array([0.8, 0.0, -0.4, 0.0])
    # Population MMD^2 = E k(x,x') + E k(y,y') - 2 E k(x,y), each from 300k independent pairs.
    n = 300_000
    x1, x2 = rng.standard_normal([n, DIM]), rng.standard_normal([n, DIM])
    y1, y2 = rng.standard_normal([n, DIM]) + shift, rng.standard_normal([n, DIM]) + shift
    terms = _kernel(x1, x2) + _kernel(y1, y2) - 2 * _kernel(x1, y1)
    population, population_error = terms.mean(), terms.std() / np.sqrt(n)
    assert population > 0.1
    unbiased = _estimates(rng, shift, 6, 4000, mmd2_unbiased)
    error = np.hypot(unbiased.std() / np.sqrt(len(unbiased)), population_error)
    assert unbiased.mean() == pytest.approx(population, abs=3 * error)


def test_kernel_inception_distance_subsets():
    rng = np.random.default_rng(3)
    real = rng.standard_normal([60, DIM])
    same = rng.standard_normal([80, DIM])
    far = rng.standard_normal([80, DIM]) + 1.5
    near_zero = kernel_inception_distance(same, real, num_subsets=50, max_subset_size=40)
    assert abs(near_zero) < 0.1 < kernel_inception_distance(far, real, num_subsets=50, max_subset_size=40)
    assert kernel_inception_distance(far, real, seed=5) == kernel_inception_distance(far, real, seed=5)
    # A 2-image reference set still works (few-shot targets); one image does not.
    assert np.isfinite(kernel_inception_distance(far, real[:2]))
    with pytest.raises(UserError, match='at least 2'):
        kernel_inception_distance(far, real[:1])
