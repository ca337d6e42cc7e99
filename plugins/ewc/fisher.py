"""The two formulas of EWC for GAN adaptation (Li et al., NeurIPS 2020, eq. 2-3).

F_i = E_x[(d log L(x | theta_S) / d theta_i)^2], the diagonal of the empirical Fisher information,
estimated from per-sample squared gradients by the host's gda_core.fisher (the square is taken per
sample and then averaged; squaring the gradient of a summed or averaged log-likelihood, as the one
public port does, is a different and much smaller quantity). The penalty
lambda * sum_i F_i (theta_i - theta_S,i)^2 keeps the weights that matter for the source near their
source values.
"""

import torch

from gda_core.fisher import empirical_fisher   # the estimator adam and rick share

__all__ = ['empirical_fisher', 'ewc_penalty']


def ewc_penalty(params, source_values, fisher, weight):
    """weight * sum_i F_i (theta_i - theta_S,i)^2 over matching lists of tensors."""
    total = None
    for param, source, importance in zip(params, source_values, fisher):
        term = (importance * (param.to(torch.float32) - source).square()).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros([])
    return total * weight
