"""FID: the Fréchet distance formula, ~0 for a set against itself, growing as the known shift^2."""

import numpy as np
import pytest
import scipy.linalg
import torch

from gda_core.metrics import evaluate
from gda_core.metrics.evaluation import Evaluation
from gda_core.metrics.fid import fid_from_features, frechet_distance, mean_cov
from stylegan2_ada.errors import UserError


def _spd(rng, dim):
    a = rng.standard_normal([dim, dim])
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_matches_the_matrix_square_root_formula():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = _spd(rng, 6), _spd(rng, 6)   # they do not commute
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # Diagonal covariances: sum (sqrt(a) - sqrt(b))^2 in closed form.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(2.0)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_known_shift():
    rng = np.random.default_rng(1)
    features = rng.standard_normal([300, 8]) @ rng.standard_normal([8, 8])
    assert abs(fid_from_features(features, features)) < 1e-9
    direction = rng.standard_normal(8)
    shifts = [0.25, 0.5, 1.0, 2.0]
    fids = [fid_from_features(features + shift * direction, features) for shift in shifts]
    for shift, value in zip(shifts, fids):   # same covariance: FID = |shift * direction|^2 exactly
        assert value == pytest.approx(shift ** 2 * np.square(direction).sum(), rel=1e-6)
    assert fids == sorted(fids)


def test_fid_handles_rank_deficient_covariances_of_few_images():
    rng = np.random.default_rng(2)
    few = rng.standard_normal([5, 16])             # 5 images, 16 dims: covariance of rank 4
    assert abs(fid_from_features(few, few)) < 1e-6   # square roots of rounding-level eigenvalues
    assert fid_from_features(few + 1.0, few) == pytest.approx(16.0, rel=1e-6)
    with pytest.raises(UserError, match='at least 2'):
        mean_cov(few[:1])


def test_fid_end_to_end_against_the_generators_own_images(make_generator, image_folder, detector_files, standins,
                                                          tmp_path):
    G = make_generator()

    def shifted(offset):   # images inside [-1, 1] (no clipping), brightness moved by `offset`
        def generate(z, c):
            return 0.5 * torch.tanh(G(z, c, noise_mode='const')) + offset
        return generate
    ev = Evaluation(shifted(0.0), G.z_dim)
    own = image_folder(tmp_path / 'own', torch.cat(list(ev.generated(24))))
    kwargs = dict(num_gen=24, detector_paths=detector_files, batch=8)
    same = evaluate(['fid'], G, generate=shifted(0.0), data=own, **kwargs)['fid']
    assert abs(same['results']['fid']) < 1e-6
    assert same['protocol']['num_gen'] == 24 and same['protocol']['num_real'] == 24

    # The stand-in's features are linear in the pooled image: a shift of d (in [-1, 1] units) moves
    # each feature vector by d * 127.5 / 255 * sum(proj) and leaves the covariance (up to rounding).
    column = standins.Inception().proj.detach().double().sum(0)
    for offset in (0.1, 0.2, 0.4):
        fid = evaluate(['fid'], G, generate=shifted(offset), data=own, **kwargs)['fid']['results']['fid']
        expected = float((offset * 127.5 / 255) ** 2 * column.square().sum())
        assert fid == pytest.approx(expected, rel=0.05)
