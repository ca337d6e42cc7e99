"""Detector features of a reference image set, cached on disk by content hash.

The key is the sha256 of the images' bytes (in dataset order), the detector's code and weights
and the way it is called, so renaming or moving a dataset keeps its cache and changing one pixel
or the detector does not reuse a stale one. Features are stored in full (float32), enough for
FID's mean and covariance, KID's subsets and precision/recall's neighbourhoods alike.
"""

import hashlib
import json
import os

import numpy as np
import torch

from stylegan2_ada.checkpoint import atomic_write, cache_dir
from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.detectors import detector_digest

CACHE_SUBDIR = 'gda-metrics'


def open_dataset(path, max_items=None, use_labels=False):
    """The reference set at `path` (zip or folder), optionally a seeded subset of max_items."""
    return ImageFolderDataset(path, use_labels=use_labels, max_size=max_items)


def dataset_digest(dataset):
    """sha256 of the dataset's images in order (names left out: content is what counts)."""
    digest = hashlib.sha256()
    for idx in range(len(dataset)):
        name, flipped, _label = dataset.get_details(idx)
        data = dataset.source.read(name)
        digest.update(f'{len(data)}:{int(flipped)}:'.encode())
        digest.update(data)
    return digest.hexdigest()


def image_batches(dataset, batch):
    """uint8 [B, C, H, W] tensors over the whole dataset, in order."""
    for start in range(0, len(dataset), batch):
        items = [dataset[i][0] for i in range(start, min(start + batch, len(dataset)))]
        yield torch.from_numpy(np.stack(items))


def cache_file(key):
    return os.path.join(cache_dir(), CACHE_SUBDIR, f'reference-{key[:32]}.pt')


def reference_features(dataset, detector, call, extract, batch=32, device='cpu', use_cache=True, log=None):
    """[N, D] float32 features of every image of `dataset` by `extract(detector, uint8 images)`.

    `call` names the extraction (e.g. 'inception_features') for the cache key.
    """
    key = hashlib.sha256(json.dumps(dict(data=dataset_digest(dataset), detector=detector_digest(detector),
                                         call=call, count=len(dataset)), sort_keys=True).encode()).hexdigest()
    path = cache_file(key)
    if use_cache and os.path.isfile(path):
        try:
            return torch.load(path, weights_only=True)['features']
        except (RuntimeError, KeyError, EOFError):
            pass  # a damaged cache entry is recomputed and replaced
    if log:
        log(f'Computing {call} of {len(dataset)} reference images ({dataset.source.path}) ...')
    with torch.no_grad():
        features = torch.cat([extract(detector, images.to(device)).to(torch.float32).cpu()
                              for images in image_batches(dataset, batch)])
    if use_cache:
        try:
            with atomic_write(path) as file:
                torch.save(dict(features=features, call=call, count=len(dataset),
                                source=str(dataset.source.path)), file)
        except OSError as error:  # an unwritable cache costs time next run, not this result
            if log:
                log(f'Warning: cannot cache reference features in {path}: {error}')
    return features
