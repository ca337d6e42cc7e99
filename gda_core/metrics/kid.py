"""Kernel Inception Distance: the unbiased MMD^2 estimator with a cubic polynomial kernel.

k(x, y) = (x.y / d + 1)^3 on Inception pool features. Per subset of m generated and m reference
features: sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2,
averaged over subsets (NVIDIA: 100 subsets of m = min(N_gen, N_real, 1000)). Unbiased, so it
averages to 0 between samples of one distribution and suits the small reference sets of few-shot
targets (m >= 2), unlike FID; single estimates can be negative.
"""

import numpy as np

from stylegan2_ada.errors import UserError

NAME = 'kid'
DEFAULT_NUM = 5000
CALL = 'inception_features'
NUM_SUBSETS = 100
MAX_SUBSET_SIZE = 1000


def mmd2_unbiased(x, y):
    """The unbiased MMD^2 estimate between equal-sized samples x, y ([m, d], m >= 2)."""
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(gen, real, num_subsets=NUM_SUBSETS, max_subset_size=MAX_SUBSET_SIZE, seed=0):
    """Mean unbiased MMD^2 over random subsets (without replacement) of gen and real features."""
    gen = np.asarray(gen, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    m = min(len(gen), len(real), max_subset_size)
    if m < 2:
        raise UserError(f'KID needs at least 2 images on each side, got {len(gen)} generated and {len(real)} real')
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        total += mmd2_unbiased(x, y)
    return total / num_subsets


def needs(num):
    return [(CALL, num)]


def compute(ev, num):
    real = ev.reference_features(CALL)
    gen = ev.generated_features(CALL, num)
    kid = kernel_inception_distance(gen.numpy(), real.numpy(), seed=ev.seed)
    return dict(results=dict(kid=kid),
                protocol=dict(num_gen=num, num_real=len(real), detector='inception', num_subsets=NUM_SUBSETS,
                              subset_size=min(num, len(real), MAX_SUBSET_SIZE)))
