"""Improved precision and recall (Kynkäänniemi et al. 2019) on VGG16 fc7 features, k = 3.

Each feature set spans a manifold: the union of balls around its points, each ball's radius the
distance to the point's k-th nearest neighbour within the set. Precision = the share of generated
points inside the reference manifold; recall = the share of reference points inside the generated
manifold (NVIDIA's pr50k3 procedure).
"""

import torch

from stylegan2_ada.errors import UserError

NAME = 'pr'
DEFAULT_NUM = 5000
CALL = 'vgg16_features'
K = 3
ROWS = 1024  # distance-matrix rows per step (memory)


def knn_radii(manifold, k=K):
    """Distance from each point to its k-th nearest neighbour within `manifold` (self excluded)."""
    radii = []
    for rows in manifold.split(ROWS):
        radii.append(torch.cdist(rows, manifold).kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def coverage(manifold, radii, probes):
    """Share of `probes` inside at least one ball of `manifold`."""
    inside = [(torch.cdist(rows, manifold) <= radii[None]).any(1) for rows in probes.split(ROWS)]
    return float(torch.cat(inside).to(torch.float64).mean())


def precision_recall(real, gen, k=K):
    """(precision, recall) of generated features `gen` against reference features `real`."""
    real = torch.as_tensor(real, dtype=torch.float32)
    gen = torch.as_tensor(gen, dtype=torch.float32)
    if min(len(real), len(gen)) <= k:
        raise UserError(f'precision/recall with k = {k} needs more than {k} images on each side, got '
                        f'{len(gen)} generated and {len(real)} real')
    precision = coverage(real, knn_radii(real, k), gen)
    recall = coverage(gen, knn_radii(gen, k), real)
    return precision, recall


def needs(num):
    return [(CALL, num)]


def compute(ev, num):
    real = ev.reference_features(CALL)
    gen = ev.generated_features(CALL, num)
    precision, recall = precision_recall(real, gen)
    return dict(results=dict(precision=precision, recall=recall),
                protocol=dict(num_gen=num, num_real=len(real), detector='vgg16', k=K))
