"""The adaptation benchmark's substitute detector: no Inception or VGG16 weights exist offline.

A small convolutional encoder, trained by the benchmark itself with self-supervised instance
discrimination (SimCLR's NT-Xent loss: two augmented views of one image attract, views of other
images repel) on the protocol's own images, without labels: the source domain's real images (all
3,786 Noto emoji by default) and the target domain's (the shots and the held-out Twemoji emoji).
It learns what tells individual emoji apart in both styles. Every view is flipped, shifted,
scaled, slightly rotated and changed in brightness and contrast; with `views='colour'` (the
default) it is also turned in hue, changed in saturation and, one view in five, made grey, so that
colour alone cannot tell two emoji apart and the features must hold their shapes. With
`views='geometry'` (the benchmark's tables before December 2026) hue is kept, and the features
are mostly palettes and layout: blobs in emoji colours then score as close to the real emoji as
the real emoji do (docs/demo.md, examples/demo/source_fid.py). How well it sees the same emoji through the two styles is measured by
cross-style retrieval over the paired sets (benchmarks/correspondence.py) and reported with every
table.

It follows the call convention of NVIDIA's detectors (input [N, 3, H, W] float in [0, 255]), so
gda_core.metrics uses it unchanged in place of both files:

- `return_features=True` (the Inception role: FID, KID): a 64-d embedding of the whole image;
- `return_lpips=True` (the VGG16 role: intra-cluster LPIPS): each stage's activations, unit-
  normalised over channels and scaled so that the summed squared difference of two images is the
  mean over stages of the spatially averaged squared distance: LPIPS with all linear weights 1.

Deterministic for a seed: initialisation, batches and augmentations come from seeded generators
and training runs on one thread. The trained weights are cached under a key made of the training
images' bytes, the settings and VERSION; change the code's behaviour, bump VERSION.
"""

import hashlib
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from stylegan2_ada.checkpoint import atomic_write, cache_dir

VERSION = 1
RESOLUTION = 32
WIDTHS = (16, 32, 64, 64)      # channels at 32, 16, 8 and 4 px
EMBED_DIM = 64                 # under the reference set's size, so FID's covariance can have full rank
PROJECTION_DIM = 32
VIEWS = ('colour', 'geometry')   # what the training views change besides geometry (see above)
DEFAULTS = dict(steps=600, batch=64, lr=2e-3, temperature=0.2, views='colour')
CACHE_SUBDIR = 'gda-benchmark'

DESCRIPTION = (
    'a 4-stage conv encoder (16-32-64-64 channels, BatchNorm, 64-d embedding) trained by the benchmark with '
    'SimCLR instance discrimination on the source domain\'s images and the target domain\'s (shots + '
    'held-out), unlabelled; embedding for FID/KID and correspondence, unit-normalised stage activations '
    '(LPIPS with unit weights) for intra-cluster diversity')
LIMITS = [
    'Tiny and trained on the protocol\'s own 32 px images: its distances are not calibrated against '
    'human judgement, and its numbers are not comparable with Inception FID/KID or VGG LPIPS in papers.',
    'It has seen the held-out reference images (without labels) during its own training; it has '
    'never seen a generator\'s output.',
    'It is retrained (and the numbers change) when the images or its settings change: compare rows '
    'of one table only.',
    'Instance discrimination does not teach it that two styles of one emoji are the same thing; '
    'cross-style retrieval (above) says how far it sees that anyway, and bounds the correspondence '
    'numbers.',
]
VIEW_LIMITS = {
    'colour': 'Its views change hue and saturation, so it weighs shapes over colours: a generator '
              'that gets an emoji\'s colours wrong but its shape right is scored closer than a '
              'person would judge.',
    'geometry': 'Its views keep hue, so colour alone tells most images apart: it reads palettes '
                'and layout more than shapes, and blobs in emoji colours can score as close to '
                'real emoji as real emoji do (examples/demo/source_fid.py on the source run, '
                'docs/demo.md). Whether samples can be named is for the pictures to show.',
}


def limits(views):
    """What the detector trained with these views cannot do (printed with every table)."""
    return LIMITS + [VIEW_LIMITS[views]]


class EmojiEncoder(torch.nn.Module):
    """Conv encoder with NVIDIA's detector call convention (see the module docstring)."""

    def __init__(self, widths=WIDTHS, embed_dim=EMBED_DIM, projection_dim=PROJECTION_DIM,
                 resolution=RESOLUTION):
        super().__init__()
        self.resolution = resolution
        self.stages = torch.nn.ModuleList()
        channels = 3
        for width in widths:
            self.stages.append(torch.nn.Sequential(
                torch.nn.Conv2d(channels, width, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(width), torch.nn.LeakyReLU(0.2),
                torch.nn.Conv2d(width, width, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(width), torch.nn.LeakyReLU(0.2)))
            channels = width
        final = resolution // 2 ** (len(widths) - 1)
        self.embed = torch.nn.Linear(channels * final * final, embed_dim)
        self.projection = torch.nn.Sequential(torch.nn.Linear(embed_dim, embed_dim),
                                              torch.nn.BatchNorm1d(embed_dim), torch.nn.ReLU(),
                                              torch.nn.Linear(embed_dim, projection_dim))

    def stage_outputs(self, x):
        """Activations of every stage for images in [-1, 1] at the encoder's resolution."""
        outputs = []
        for index, stage in enumerate(self.stages):
            if index:
                x = F.avg_pool2d(x, 2)
            x = stage(x)
            outputs.append(x)
        return outputs

    def embedding(self, x):
        """Unnormalised embedding (what the projection head reads in training)."""
        return self.embed(self.stage_outputs(x)[-1].flatten(1))

    def features(self, x):
        """The embedding on the sphere of radius sqrt(dim): every entry of order 1, as KID's
        kernel (x.y / d + 1)^3 expects; NT-Xent leaves the embedding's scale free."""
        e = self.embedding(x)
        return F.normalize(e, dim=1) * math.sqrt(e.shape[1])

    def prepare(self, images):
        """[0, 255] images at any size -> [-1, 1] at the encoder's resolution."""
        x = images.to(torch.float32) / 127.5 - 1
        if x.shape[2:] != (self.resolution, self.resolution):
            mode = 'area' if x.shape[2] > self.resolution else 'bilinear'
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode=mode)
        return x

    def forward(self, images, return_features=False, return_lpips=False, resize_images=True,
                no_output_bias=False):
        if no_output_bias:
            raise ValueError('the substitute detector has no class probabilities (IS)')
        x = self.prepare(images)
        if return_lpips:
            stages = self.stage_outputs(x)
            parts = []
            for out in stages:
                unit = out / out.square().sum(1, keepdim=True).add(1e-10).sqrt()
                parts.append(unit.flatten(1) / math.sqrt(out.shape[2] * out.shape[3] * len(stages)))
            return torch.cat(parts, 1)
        return self.features(x)


def augment(images, generator, colour=False):
    """Random view of [-1, 1] images: flip, shift, scale, rotation, brightness and contrast; with
    `colour`, then also hue, saturation and (one in five) grey."""
    n = len(images)

    def uniform(lo, hi):
        return torch.rand(n, generator=generator) * (hi - lo) + lo

    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    scale = uniform(0.85, 1.15)
    angle = uniform(-0.2, 0.2)
    shift = uniform(-0.2, 0.2), uniform(-0.2, 0.2)   # up to 3 px at 32 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[0]], 1),
                         torch.stack([sin * flip, cos, shift[1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode='bilinear', padding_mode='border', align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(0.85, 1.15).view(n, 1, 1, 1)
    brightness = uniform(-0.1, 0.1).view(n, 1, 1, 1)
    out = ((out - mean) * contrast + mean + brightness).clamp(-1, 1)
    return recolour(out, generator) if colour else out


def recolour(images, generator):
    """Turn each image's colours about the grey axis by a random angle (Rodrigues' rotation of
    RGB), scale its saturation by 0.5-1.5 and make one in five grey."""
    n = len(images)
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    axis = torch.full([3], 1 / math.sqrt(3))
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                          [-axis[1], axis[0], 0.0]])
    rotation = (torch.eye(3) + torch.sin(angle).view(n, 1, 1) * cross
                + (1 - torch.cos(angle)).view(n, 1, 1) * (cross @ cross))
    out = torch.einsum('nij,njhw->nihw', rotation, images)
    grey = out.mean(dim=1, keepdim=True)
    saturation = torch.rand(n, generator=generator) + 0.5
    saturation = torch.where(torch.rand(n, generator=generator) < 0.2, 0.0, saturation)
    return (grey + (out - grey) * saturation.view(n, 1, 1, 1)).clamp(-1, 1)


def nt_xent(a, b, temperature):
    """SimCLR's loss for projections a[i] <-> b[i] (positives) against all other views."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float('-inf'))
    n = len(a)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, targets)


def train_encoder(images, seed=0, steps=DEFAULTS['steps'], batch=DEFAULTS['batch'],
                  lr=DEFAULTS['lr'], temperature=DEFAULTS['temperature'], views=DEFAULTS['views'],
                  log=None, pairs=None):
    """An EmojiEncoder trained on uint8 images [N, 3, 32, 32]; (encoder, training summary).

    pairs: optional LongTensor [P, 2] of image rows that show the same thing in two styles; each
    step then also pulls a view of one towards a view of the other (NT-Xent over a batch of
    pairs), which teaches the embedding content across styles (the correspondence encoder)."""
    if views not in VIEWS:
        raise ValueError(f'views must be one of {VIEWS}, got {views!r}')
    colour = views == 'colour'
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # one thread: the same bits on every run of this machine
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = EmojiEncoder()
        generator = torch.Generator().manual_seed(seed + 1)
        data = encoder.prepare(images)   # [-1, 1] at the encoder's resolution
        optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(   # cosine decay to 0: a settled end point
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
        batch = min(batch, len(data))
        encoder.train()
        losses = []
        for step in range(steps):
            rows = torch.randperm(len(data), generator=generator)[:batch]
            x = data[rows]
            a = encoder.projection(encoder.embedding(augment(x, generator, colour)))
            b = encoder.projection(encoder.embedding(augment(x, generator, colour)))
            loss = nt_xent(a, b, temperature)
            if pairs is not None:
                chosen = pairs[torch.randperm(len(pairs), generator=generator)[:batch]]
                a = encoder.projection(encoder.embedding(augment(data[chosen[:, 0]], generator, colour)))
                b = encoder.projection(encoder.embedding(augment(data[chosen[:, 1]], generator, colour)))
                loss = loss + nt_xent(a, b, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if log and (step + 1) % max(steps // 4, 1) == 0:
                log(f'  substitute detector: step {step + 1}/{steps}, NT-Xent '
                    f'{np.mean(losses[-20:]):.3f}')
        encoder.eval().requires_grad_(False)
        summary = dict(final_loss=float(np.mean(losses[-20:])),
                       retrieval_top1=retrieval_accuracy(encoder, data, generator, colour))
    finally:
        torch.set_num_threads(threads)
    return encoder, summary


@torch.no_grad()
def retrieval_accuracy(encoder, data, generator, colour=False):
    """Share of augmented views whose nearest clean embedding is their own image (sanity)."""
    clean = F.normalize(encoder.embedding(data), dim=1)
    views = F.normalize(encoder.embedding(augment(data, generator, colour)), dim=1)
    return float(((views @ clean.T).argmax(1) == torch.arange(len(data))).float().mean())


def cache_key(images, seed, settings, pairs=None):
    # Keys made before `views` existed were geometry views: they stay valid (and so do the
    # benchmark runs recorded under them).
    settings = {key: value for key, value in settings.items()
                if not (key == 'views' and value == 'geometry')}
    digest = hashlib.sha256(json.dumps(dict(version=VERSION, seed=seed, settings=settings,
                                            widths=WIDTHS, embed=EMBED_DIM,
                                            shape=list(images.shape)), sort_keys=True).encode())
    digest.update(images.contiguous().numpy().tobytes())
    if pairs is not None:
        digest.update(b'pairs' + pairs.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_or_train(images, seed=0, use_cache=True, log=None, pairs=None, **settings):
    """(encoder, info) for uint8 training images (and optional cross-style pairs, see
    train_encoder): from the cache, else trained and cached."""
    settings = dict(DEFAULTS, **settings)
    key = cache_key(images, seed, settings, pairs)
    path = os.path.join(cache_dir(), CACHE_SUBDIR, f'substitute-detector-{key[:32]}.pt')
    if use_cache and os.path.isfile(path):
        try:
            saved = torch.load(path, weights_only=True)
            encoder = EmojiEncoder()
            encoder.load_state_dict(saved['state_dict'])
            return encoder.eval().requires_grad_(False), dict(saved['info'], cached=path)
        except (RuntimeError, KeyError, EOFError):
            pass   # a damaged entry is retrained and replaced
    if log:
        log(f'Training the substitute detector on {len(images)} images ({settings["steps"]} steps, '
            f'seed {seed}) ...')
    encoder, summary = train_encoder(images, seed=seed, log=log, pairs=pairs, **settings)
    info = dict(summary, key=key, seed=seed, settings=settings, images=len(images), version=VERSION)
    if use_cache:
        try:
            with atomic_write(path) as file:
                torch.save(dict(state_dict=encoder.state_dict(), info=info), file)
        except OSError as error:
            if log:
                log(f'Warning: cannot cache the substitute detector in {path}: {error}')
    return encoder, dict(info, cached=None)
