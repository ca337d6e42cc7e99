"""The diagonal empirical Fisher information, shared by every method that ranks or weighs
parameters by it (ewc, adam, rick): F_i = E_x[(d loss(x) / d theta_i)^2].

The square is taken per sample and then averaged: squaring the gradient of a summed or averaged
loss is a different, much smaller quantity. The sign of the loss does not matter (a loss and its
log-likelihood give the same Fisher), so callers pass whichever their paper differentiates.
"""

import numpy as np
import torch


def per_sample_fisher(objectives, num_batches):
    """Fisher information of several (per-sample values, parameters) objectives at once.

    `objectives(b)` returns, for batch b, a list of (values [n], params) pairs that may share one
    graph (rick differentiates G's loss and D's loss of the same fake). Every pair must give the
    same number n of samples in a batch. Returns, per pair, one tensor per parameter shaped like it.
    """
    totals, count = None, 0
    for batch in range(num_batches):
        pairs = [(values.reshape(-1), list(params)) for values, params in objectives(batch)]
        if totals is None:
            totals = [[torch.zeros_like(p, dtype=torch.float32) for p in params]
                      for _, params in pairs]
        sizes = {len(values) for values, _ in pairs}
        if len(sizes) != 1:
            raise ValueError(f'the objectives of one batch give different sample counts {sizes}')
        n = sizes.pop()
        calls = [(pair, index) for index in range(n) for pair in range(len(pairs))]
        for call, (pair, index) in enumerate(calls):
            values, params = pairs[pair]
            grads = torch.autograd.grad(values[index], params, allow_unused=True,
                                        retain_graph=call < len(calls) - 1)
            for total, grad in zip(totals[pair], grads):
                if grad is not None:
                    total.add_(grad.detach().to(torch.float32).square())
        count += n
    if not count:
        raise ValueError('the Fisher information needs at least one sample')
    return [[total / count for total in pair] for pair in totals]


def empirical_fisher(log_likelihoods, params, num_batches):
    """One objective: `log_likelihoods(b)` gives batch b's per-sample values [n], differentiable
    with respect to `params`. Returns one tensor per parameter, shaped like it."""
    return per_sample_fisher(lambda batch: [(log_likelihoods(batch), params)], num_batches)[0]


def percentile(values, q):
    """numpy's (linear) percentile q in [0, 100] of the pooled values: the cut AdAM and RICK take
    over all filters of a group, whatever layer they sit in."""
    pooled = torch.cat([torch.as_tensor(v, dtype=torch.float64).reshape(-1).cpu() for v in values])
    return float(np.percentile(pooled.numpy(), q))
