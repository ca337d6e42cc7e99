"""The probing result cached per source + target + probing settings, so that several runs on one
pair (seeds, main-stage options, other plugins) probe once. The key hashes the source G and D, the
target images and every setting probing depends on; the file holds plain tensors."""

import hashlib
import json
import os

import numpy as np
import torch

from stylegan2_ada.checkpoint import atomic_write, cache_dir

SUBDIR = 'gda-adam'
VERSION = 1   # bump when probing changes what it computes


def probe_key(run, settings):
    digest = hashlib.sha256(json.dumps(dict(settings, version=VERSION), sort_keys=True).encode())
    for net in (run.G_s, run.D):
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for index in range(len(run.dataset)):
        digest.update(np.ascontiguousarray(run.dataset.raw_image(index)).tobytes())
    return digest.hexdigest()


def path_for(key):
    return os.path.join(cache_dir(), SUBDIR, f'probe-{key[:32]}.pt')


def load(key):
    """The cached Fisher for `key`, or None (missing or unreadable: probe again)."""
    path = path_for(key)
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:   # a truncated or foreign file only costs a new probe
        return None
    return data['fisher'] if data.get('key') == key else None


def save(key, fisher):
    path = path_for(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, 'wb') as f:
        torch.save(dict(key=key, fisher=fisher), f)
    return path
