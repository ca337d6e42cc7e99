"""Correspondence: for the same z, does the adapted generator draw the emoji the source drew?

The offline protocol has what no paper's has: every emoji exists in both styles (Noto and Twemoji),
in the same order. So for a source sample G_s(z) we can name the emoji it draws (its nearest Noto
image in the detector's embedding) and check that the adapted G(z) is nearest to the *same emoji's*
Twemoji image among all Twemoji images. The share of z for which it is, is the correspondence kept;
CDC and RSSA claim to keep it, plain fine-tuning to lose it.

The same pairs measure the detector itself: retrieving an emoji's Noto image from its Twemoji image
(and back) is how well the embedding sees content through style.
"""

import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from gda_core import demo_data
from gda_core import generate
from gda_core.metrics.evaluation import quantize
from stylegan2_ada.dataset import ImageFolderDataset


def _png(data):
    return np.asarray(PIL.Image.open(io.BytesIO(data)).convert('RGB')).transpose(2, 0, 1)


def shipped_pairs(folder=demo_data.DIR):
    """(Noto images, Twemoji images, names): uint8 [N, 3, 32, 32] each, row i the same emoji, from
    the shipped data and its provenance.json (Twemoji from the target shots and the held-out zip)."""
    records = json.load(open(os.path.join(folder, 'provenance.json')))['images']
    twemoji = {record['unified']: record for record in records if record['role'] in ('target', 'heldout')}
    archives = {}

    def read(output):
        if ':' not in output:
            with open(os.path.join(folder, *output.split('/')), 'rb') as file:
                return file.read()
        name, member = output.split(':', 1)
        if name not in archives:
            archives[name] = zipfile.ZipFile(os.path.join(folder, name))
        return archives[name].read(member)

    sources, targets, names = [], [], []
    try:
        for record in records:
            if record['role'] == 'source' and record['unified'] in twemoji:
                sources.append(_png(read(record['output'])))
                targets.append(_png(read(twemoji[record['unified']]['output'])))
                names.append(record['short_name'])
    finally:
        for archive in archives.values():
            archive.close()
    return torch.from_numpy(np.stack(sources)), torch.from_numpy(np.stack(targets)), names


def dataset_pairs(source_path, target_path):
    """(source images, target images, names) from two datasets holding the same items in the same
    order (a user's own paired domains)."""
    a, b = ImageFolderDataset(source_path), ImageFolderDataset(target_path)
    if len(a) != len(b):
        raise ValueError(f'{source_path} has {len(a)} images and {target_path} {len(b)}: paired sets '
                         'need the same items in the same order')
    images = [torch.from_numpy(np.stack([d[i][0] for i in range(len(d))])) for d in (a, b)]
    return images[0], images[1], [str(i) for i in range(len(a))]


@torch.no_grad()
def embed(detector, images, batch=256):
    """Unit-length embeddings of uint8 (or [0, 255] float) images [N, 3, H, W]."""
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    parts = [detector(chunk.float(), return_features=True) for chunk in images.split(batch)]
    return F.normalize(torch.cat(parts).float(), dim=1)


def nearest(queries, bank):
    """Index of the nearest bank embedding (cosine) for each query embedding."""
    return (queries @ bank.T).argmax(dim=1)


def retrieval(detector, sources, targets, k=5):
    """Cross-style retrieval over paired sets: top-1 and top-k share of target images whose own
    source image is nearest (and the reverse direction)."""
    a, b = embed(detector, sources), embed(detector, targets)
    truth = torch.arange(len(a))

    def scores(queries, bank):
        ranked = (queries @ bank.T).topk(min(k, len(bank)), dim=1).indices
        return (float((ranked[:, 0] == truth).float().mean()),
                float((ranked == truth[:, None]).any(dim=1).float().mean()))

    (t2s_1, t2s_k), (s2t_1, s2t_k) = scores(b, a), scores(a, b)
    return dict(pairs=len(a), k=k, target_to_source_top1=t2s_1, target_to_source_topk=t2s_k,
                source_to_target_top1=s2t_1, source_to_target_topk=s2t_k)


class Correspondence:
    """The correspondence metric over fixed latents (seeds 0..count-1, constant noise)."""

    def __init__(self, detector, sources, targets, count=500):
        self.detector = detector
        self.source_bank = embed(detector, sources)
        self.target_bank = embed(detector, targets)
        self.count = count

    def shares(self, source_images, adapted_images):
        """(share of z whose adapted image keeps the source's emoji, distinct source emoji)."""
        drawn = nearest(embed(self.detector, source_images), self.source_bank)
        kept = nearest(embed(self.detector, adapted_images), self.target_bank)
        return float((drawn == kept).float().mean()), int(len(torch.unique(drawn)))

    def of_snapshot(self, snapshot, device='cpu'):
        """Correspondence of a fine-tuned snapshot: its source generator vs its adapted one, both
        through the snapshot's plugins, as `gda generate --pairs` renders them."""
        model = generate.open_model(snapshot, device=device, need_source=True)
        z = generate.seed_latents(range(self.count), model.G.z_dim)
        source, adapted = [], []
        for chunk in z.split(100):
            s, a = generate.pairs(model, chunk)
            source.append(quantize(s).cpu())
            adapted.append(quantize(a).cpu())
        share, _ = self.shares(torch.cat(source), torch.cat(adapted))
        return share

    def of_source(self, network, device='cpu'):
        """The unadapted source as its own 'adapted' generator: how often its Noto-style sample is
        already nearest to the same emoji's Twemoji image (the floor a method starts from), and how
        many distinct emoji its samples draw."""
        model = generate.open_model(network, device=device)
        z = generate.seed_latents(range(self.count), model.G.z_dim)
        images = torch.cat([quantize(generate.render(model, chunk)).cpu() for chunk in z.split(100)])
        share, distinct = self.shares(images, images)
        return dict(correspondence=share, distinct_emoji=distinct)
