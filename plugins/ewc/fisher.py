"""The two formulas of EWC for GAN adaptation (Li et al., NeurIPS 2020, eq. 2-3).

F_i = E_x[(d log L(x | theta_S) / d theta_i)^2], the diagonal of the empirical Fisher information,
estimated from per-sample squared gradients (the square is taken per sample and then averaged;
squaring the gradient of a summed or averaged log-likelihood, as the one public port does, is a
different and much smaller quantity). The penalty lambda * sum_i F_i (theta_i - theta_S,i)^2 keeps
the weights that matter for the source near their source values.
"""

import torch


def empirical_fisher(log_likelihoods, params, num_batches):
    """Mean over samples of the squared gradient of each sample's log-likelihood.

    `log_likelihoods(b)` returns batch b's per-sample log-likelihoods [n], differentiable with
    respect to `params`. Returns one tensor per parameter, shaped like it.
    """
    fisher = [torch.zeros_like(param, dtype=torch.float32) for param in params]
    count = 0
    for batch in range(num_batches):
        values = log_likelihoods(batch).reshape(-1)
        for index in range(len(values)):
            grads = torch.autograd.grad(values[index], params, allow_unused=True,
                                        retain_graph=index < len(values) - 1)
            for total, grad in zip(fisher, grads):
                if grad is not None:
                    total.add_(grad.detach().to(torch.float32).square())
        count += len(values)
    if count == 0:
        raise ValueError('the Fisher information needs at least one sample')
    return [total / count for total in fisher]


def ewc_penalty(params, source_values, fisher, weight):
    """weight * sum_i F_i (theta_i - theta_S,i)^2 over matching lists of tensors."""
    total = None
    for param, source, importance in zip(params, source_values, fisher):
        term = (importance * (param.to(torch.float32) - source).square()).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros([])
    return total * weight
