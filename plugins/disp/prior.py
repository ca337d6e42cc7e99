"""DISP's data instance prior: the bank {C(x_j)} of the target images' features, and the two ways
the slides sample a prior from it at inference (mixup for few-shot and limited data, a GMM for
large-scale data).

The extractor follows NVIDIA's detector convention: input [N, 3, H, W] float in [0, 255]
(grayscale repeated to three channels), and `return_features=True` when its forward takes that
argument (NVIDIA's vgg16.pt then gives the 4096-d fc7 features, DISP-Vgg16); any other TorchScript
extractor is called with the image alone, and its output is flattened to [N, d].
"""

import inspect

import numpy as np
import torch

from stylegan2_ada.detectors import to_detector_input

EXTRACT_BATCH = 16
GMM_ITERATIONS = 100
VARIANCE_FLOOR = 1e-2   # of the bank's per-dimension variance; see fit_gmm


def _argument_names(module):
    schema = getattr(getattr(module, 'forward', None), 'schema', None)
    if schema is not None:   # TorchScript
        return [argument.name for argument in schema.arguments]
    return list(inspect.signature(module.forward if hasattr(module, 'forward') else module).parameters)


@torch.no_grad()
def extract(extractor, images, device):
    """C(x) [N, d] (float32) of uint8 images [N, C, H, W]."""
    takes_flag = 'return_features' in _argument_names(extractor)
    features = []
    for start in range(0, len(images), EXTRACT_BATCH):
        x = to_detector_input(torch.as_tensor(images[start:start + EXTRACT_BATCH]).to(device))
        out = extractor(x, return_features=True) if takes_flag else extractor(x)
        features.append(out.reshape(len(x), -1).to(torch.float32))
    return torch.cat(features)


def feature_dim(extractor, channels, resolution, device):
    """The extractor's feature width, from one black image of the run's shape."""
    probe = torch.zeros([1, channels, resolution, resolution], dtype=torch.uint8)
    return int(extract(extractor, probe, device).shape[1])


def centring(bank):
    """(mean, scale): G and D see (C(x) - mean) / scale, the bank centred to unit RMS.

    Features of one domain share a large common component (VGG fc7 vectors of ten faces have
    cosines near 1); NVIDIA's embedding, normalised after a linear map, would pass that common
    part and leave the priors nearly indistinguishable. Centring keeps what tells the images apart.
    One image has nothing to centre against: its prior is only scaled.
    """
    bank = torch.as_tensor(bank, dtype=torch.float32)
    mean = bank.mean(0) if len(bank) > 1 else torch.zeros_like(bank[0])
    scale = (bank - mean).square().mean().sqrt().clamp_min(1e-8)
    return mean, scale


def mixup(bank, n, rng):
    """n priors lam * b_i + (1 - lam) * b_j, i and j uniform over the bank, lam ~ U(0, 1)."""
    picks = torch.randint(len(bank), [2, n], generator=rng).to(bank.device)
    lam = torch.rand([n, 1], generator=rng).to(bank.device, bank.dtype)
    return lam * bank[picks[0]] + (1 - lam) * bank[picks[1]]


def fit_gmm(data, components, seed=0, iterations=GMM_ITERATIONS):
    """A diagonal-covariance Gaussian mixture fitted by EM: dict(weights [k], means [k, d],
    variances [k, d]) as float32 CPU tensors.

    Means start at k distinct bank entries chosen from `seed`. Variances are floored at
    VARIANCE_FLOOR times the bank's per-dimension variance, so a component that owns a single image
    still samples around it instead of collapsing onto it.
    """
    x = data.detach().to('cpu', torch.float64)
    n, _ = x.shape
    k = max(1, min(int(components), n))
    rng = np.random.RandomState(seed)
    means = x[torch.as_tensor(rng.choice(n, size=k, replace=False))].clone()
    floor = VARIANCE_FLOOR * x.var(dim=0, unbiased=False) + 1e-12
    variances = (x.var(dim=0, unbiased=False) + floor).expand(k, -1).clone()
    weights = torch.full([k], 1.0 / k, dtype=torch.float64)
    for _ in range(iterations):
        log_p = _log_densities(x, weights, means, variances)          # [n, k]
        resp = (log_p - log_p.logsumexp(dim=1, keepdim=True)).exp()    # E step
        mass = resp.sum(dim=0) + 1e-12                                 # M step
        weights = mass / n
        means = (resp.t() @ x) / mass[:, None]
        variances = (resp.t() @ x.square()) / mass[:, None] - means.square()
        variances = variances.clamp(min=0) + floor
    return dict(weights=weights.float(), means=means.float(), variances=variances.float())


def _log_densities(x, weights, means, variances):
    """log(w_k N(x | mu_k, diag var_k)) for every point and component."""
    diff = x[:, None, :] - means[None]
    log_normal = -0.5 * ((diff.square() / variances[None]).sum(-1)
                         + variances.log().sum(-1)[None] + x.shape[1] * np.log(2 * np.pi))
    return log_normal + weights.log()[None]


def sample_gmm(gmm, n, rng, device):
    """n draws from a fitted mixture: a component by its weight, then mean + std * N(0, I)."""
    picks = torch.multinomial(gmm['weights'].double(), n, replacement=True, generator=rng)
    noise = torch.randn([n, gmm['means'].shape[1]], generator=rng)
    draws = gmm['means'][picks] + gmm['variances'][picks].sqrt() * noise
    return draws.to(device)
