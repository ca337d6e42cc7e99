"""One evaluation: how a network's images are drawn, and which data and detectors the metrics use.

Generated images depend only on (seed, image index): z (and c) come in fixed chunks seeded from the
seed, so every metric of an evaluation sees the same images, features computed once (Inception for
fid and kid, say) are shared, and two evaluations with the same seed compare like with like.
Images are quantised to uint8 before any detector sees them, as NVIDIA's metrics do.
"""

import numpy as np
import torch

from stylegan2_ada import detectors as det
from stylegan2_ada.errors import UserError

from .reference import open_dataset, reference_features

Z_CHUNK = 1024

# call name -> (detector, extraction function(detector, uint8 images))
EXTRACTORS = {
    'inception_features': ('inception', det.inception_features),
    'inception_probabilities': ('inception', det.inception_probabilities),
    'vgg16_features': ('vgg16', det.vgg16_features),
}


def quantize(images):
    """[-1, 1] float images -> uint8, exactly as NVIDIA's metrics round them."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def _chunk_generator(seed, stream, chunk):
    return torch.Generator().manual_seed((seed * 1_000_003 + stream * 7919 + chunk) % (2 ** 63))


def latents(z_dim, start, stop, seed, stream=0):
    """z of images start..stop-1: a pure function of (seed, index), whatever the batching."""
    parts = []
    for chunk in range(start // Z_CHUNK, (stop - 1) // Z_CHUNK + 1):
        z = torch.randn([Z_CHUNK, z_dim], generator=_chunk_generator(seed, stream, chunk))
        base = chunk * Z_CHUNK
        parts.append(z[max(start, base) - base:min(stop, base + Z_CHUNK) - base])
    return torch.cat(parts) if parts else torch.zeros([0, z_dim])


def label_indices(count, start, stop, seed):
    """Which dataset label conditions images start..stop-1 (conditional networks)."""
    parts = []
    for chunk in range(start // Z_CHUNK, (stop - 1) // Z_CHUNK + 1):
        idx = torch.randint(count, [Z_CHUNK], generator=_chunk_generator(seed, 1, chunk))
        base = chunk * Z_CHUNK
        parts.append(idx[max(start, base) - base:min(stop, base + Z_CHUNK) - base])
    return torch.cat(parts)


def default_generate(G, truncation_psi=1.0, noise_mode='random'):
    """generate(z, c) -> [-1, 1] images of plain G (no plugin transforms)."""
    def generate(z, c):
        return G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
    return generate


class Evaluation:
    """The network under evaluation plus the data, detectors and settings its metrics share.

    generate(z, c) -> [-1, 1] images; pairs(z) -> (source images, adapted images) for scs (None:
    scs unavailable). data: the reference set (fid, kid, pr; c labels of conditional networks);
    train_data: the clusters of intra_lpips (default: data). detector_paths: {'inception': path,
    'vgg16': path, 'hed': path}, each optional; 'inception' or 'vgg16' may also be a loaded module
    that follows NVIDIA's call convention (a substitute detector, e.g. benchmarks/adaptation.py's).
    """

    def __init__(self, generate, z_dim, c_dim=0, *, pairs=None, data=None, train_data=None, num_real=None,
                 detector_paths=None, edges='sobel', device='cpu', batch=32, seed=0, use_cache=True,
                 log=None):
        self.generate = generate
        self.z_dim, self.c_dim = z_dim, c_dim
        self.pairs = pairs
        self.data, self.train_data = data, train_data or data
        self.num_real = num_real
        self.detector_paths = dict(detector_paths or {})
        self.edges = edges
        self.device = torch.device(device)
        self.batch, self.seed, self.use_cache = batch, seed, use_cache
        self.log = log
        self._datasets, self._features, self._labels = {}, {}, None

    # -- detectors and data ---------------------------------------------------------------------

    def detector(self, name):
        given = self.detector_paths.get(name)
        if isinstance(given, torch.nn.Module):   # a stand-in with NVIDIA's call convention
            return given
        return det.load_detector(name, given, device=self.device)

    def dataset(self, which='data'):
        """The reference set ('data') or the training images ('train_data'), opened once."""
        path = getattr(self, which)
        if path is None:
            what = 'a reference image set (--data)' if which == 'data' else 'the training images (--train-data)'
            raise UserError(f'this metric needs {what}: a zip or folder of images')
        key = (which, path)
        if key not in self._datasets:
            max_items = self.num_real if which == 'data' else None
            self._datasets[key] = open_dataset(path, max_items=max_items,
                                               use_labels=which == 'data' and self.c_dim > 0)
        return self._datasets[key]

    def _conditions(self, start, stop):
        infer_c = getattr(self.generate, 'infer_c', None)
        if infer_c is not None:   # a conditioning plugin's c, seeded per image as `gda generate` does
            return torch.cat([infer_c(1, self.seed * 1_000_003 + index).cpu() for index in range(start, stop)])
        if self.c_dim == 0:
            return torch.zeros([stop - start, 0])
        if self._labels is None:
            dataset = self.dataset('data')
            if dataset.label_dim != self.c_dim:
                raise UserError(f'the network is conditioned on {self.c_dim} labels but {self.data} gives '
                                f'{dataset.label_dim}; pass a reference set with its dataset.json labels')
            self._labels = torch.from_numpy(np.stack([dataset.get_label(i) for i in range(len(dataset))]))
        return self._labels[label_indices(len(self._labels), start, stop, self.seed)].to(torch.float32)

    # -- generated images and features ----------------------------------------------------------

    @torch.no_grad()
    def generated(self, num, start=0):
        """uint8 [B, C, H, W] batches of generated images start..start+num-1 on the device."""
        for lo in range(start, start + num, self.batch):
            hi = min(lo + self.batch, start + num)
            z = latents(self.z_dim, lo, hi, self.seed).to(self.device)
            c = self._conditions(lo, hi).to(self.device)
            yield quantize(self.generate(z, c))

    @torch.no_grad()
    def precompute(self, needs):
        """Fill the feature memo for [(call, num)] in one pass over the generated images."""
        wanted = {}
        for call, num in needs:
            if self._features.get(call) is None or len(self._features[call]) < num:
                wanted[call] = max(num, wanted.get(call, 0))
        if not wanted:
            return
        parts = {call: [] for call in wanted}
        done = 0
        for images in self.generated(max(wanted.values())):
            for call, num in wanted.items():
                if done < num:
                    name, extract = EXTRACTORS[call]
                    take = images[:num - done]
                    parts[call].append(extract(self.detector(name), take).to(torch.float32).cpu())
            done += len(images)
        for call in wanted:
            self._features[call] = torch.cat(parts[call])

    def generated_features(self, call, num):
        """[num, D] features of the first num generated images by EXTRACTORS[call]."""
        self.precompute([(call, num)])
        return self._features[call][:num]

    def reference_features(self, call, which='data'):
        name, extract = EXTRACTORS[call]
        return reference_features(self.dataset(which), self.detector(name), call, extract, batch=self.batch,
                                  device=self.device, use_cache=self.use_cache, log=self.log)
