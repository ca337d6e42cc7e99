"""Fréchet Inception Distance: Inception pool features of generated vs reference images.

FID = |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2)), covariances with N - 1 like NVIDIA's
np.cov. The trace of the matrix square root is computed as the sum of the square roots of the
eigenvalues of S_r^(1/2) S_g S_r^(1/2) (the same eigenvalues as S_g S_r, but symmetric), which
stays real and stable for the rank-deficient covariances of small few-shot reference sets.
"""

import numpy as np

from stylegan2_ada.errors import UserError

NAME = 'fid'
DEFAULT_NUM = 5000
CALL = 'inception_features'


def mean_cov(features):
    """(mean, covariance) in float64 of [N, D] features (N >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise UserError(f'FID needs at least 2 images on each side, got {len(features)}')
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """The Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2)."""
    root = _psd_sqrt(sigma2)
    middle = root @ sigma1 @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid_from_features(gen, real):
    return frechet_distance(*mean_cov(gen), *mean_cov(real))


def needs(num):
    return [(CALL, num)]


def compute(ev, num):
    real = ev.reference_features(CALL)
    gen = ev.generated_features(CALL, num)
    return dict(results=dict(fid=fid_from_features(gen.numpy(), real.numpy())),
                protocol=dict(num_gen=num, num_real=len(real), detector='inception'))
