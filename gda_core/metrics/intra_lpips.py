"""Intra-cluster LPIPS: CDC's (Ojha et al. 2021) measure of diversity that ignores memorisation.

Clusters are the training images. Each generated image joins the cluster of the training image
nearest to it by LPIPS (the step CDC's released code leaves out, its issue #31); in each cluster
the mean LPIPS over all pairs of its first 50 members (in generation order) is taken, and the
result is the mean over clusters. A generator that copies its training images scores 0; clusters
with fewer than two members have no pairs and are left out (the count used is reported).
"""

import itertools

import torch

from stylegan2_ada.detectors import lpips_features
from stylegan2_ada.errors import UserError

from .reference import image_batches

NAME = 'intra_lpips'
DEFAULT_NUM = 1000
MAX_MEMBERS = 50


def _features(vgg, images, batch, device):
    return torch.cat([lpips_features(vgg, part.to(device)).cpu() for part in images.split(batch)])


@torch.no_grad()
def assign(vgg, generated_batches, centres, max_members=MAX_MEMBERS, batch=32, device='cpu'):
    """{cluster: up to max_members uint8 images} by nearest centre (LPIPS), in generation order."""
    centre_features = _features(vgg, centres, batch, device).double()
    members = {cluster: [] for cluster in range(len(centres))}
    for part in generated_batches:
        if part.shape[2:] != centres.shape[2:]:
            raise UserError(f'intra_lpips compares generated {part.shape[-1]}px images with '
                            f'{centres.shape[-1]}px training images; convert the training images with '
                            f'`gda dataset SRC DEST.zip --resolution {part.shape[-1]}`')
        nearest = torch.cdist(lpips_features(vgg, part.to(device)).cpu().double(), centre_features).argmin(1)
        for image, cluster in zip(part.cpu(), nearest.tolist()):
            if len(members[cluster]) < max_members:
                members[cluster].append(image)
    return {cluster: torch.stack(images) for cluster, images in members.items() if images}


@torch.no_grad()
def mean_pairwise_lpips(vgg, images, batch=32, device='cpu'):
    """Mean LPIPS over all unordered pairs of `images` (at least two)."""
    features = _features(vgg, images, batch, device).double()
    pairs = torch.tensor(list(itertools.combinations(range(len(features)), 2)))
    total = 0.0
    for chunk in pairs.split(256):
        total += float((features[chunk[:, 0]] - features[chunk[:, 1]]).square().sum())
    return total / len(pairs)


def intra_cluster_lpips(vgg, generated_batches, centres, max_members=MAX_MEMBERS, batch=32, device='cpu'):
    """(score, clusters used) for uint8 generated batches against uint8 training images."""
    clusters = assign(vgg, generated_batches, centres, max_members, batch, device)
    scores = [mean_pairwise_lpips(vgg, images, batch, device) for images in clusters.values() if len(images) >= 2]
    if not scores:
        raise UserError('intra_lpips: no cluster received two generated images; generate more (--num-gen)')
    return sum(scores) / len(scores), len(scores)


def needs(num):
    return []


def compute(ev, num):
    dataset = ev.dataset('train_data')
    centres = torch.cat(list(image_batches(dataset, ev.batch)))
    score, used = intra_cluster_lpips(ev.detector('vgg16'), ev.generated(num), centres, batch=ev.batch,
                                      device=ev.device)
    return dict(results=dict(intra_lpips=score),
                protocol=dict(num_gen=num, clusters=len(centres), clusters_used=used, max_members=MAX_MEMBERS,
                              detector='vgg16'))
