"""Inception Score: exp(E_x KL(p(y|x) || p(y))) over 10 splits of the generated images.

p(y|x) are Inception's 1008 class probabilities without the output bias (as Salimans et al.'s
original and NVIDIA's is50k); the score is the mean over splits, with their standard deviation.
"""

import torch

from stylegan2_ada.errors import UserError

NAME = 'is'
DEFAULT_NUM = 5000
CALL = 'inception_probabilities'
SPLITS = 10


def inception_score(probs, splits=SPLITS):
    """(mean, std) of exp(mean KL(p(y|x) || p(y))) over `splits` consecutive parts of `probs`."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if len(probs) < splits:
        raise UserError(f'the Inception Score over {splits} splits needs at least {splits} images, got {len(probs)}')
    scores = []
    for i in range(splits):
        part = probs[i * len(probs) // splits:(i + 1) * len(probs) // splits]
        marginal = part.mean(0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)
        scores.append(torch.exp(kl.sum(1).mean()))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def needs(num):
    return [(CALL, num)]


def compute(ev, num):
    mean, std = inception_score(ev.generated_features(CALL, num))
    return dict(results=dict(is_mean=mean, is_std=std),
                protocol=dict(num_gen=num, splits=SPLITS, detector='inception'))
