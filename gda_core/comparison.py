"""comparison.png at the end of a fine-tuning run: the source and the adapted generator on the
same latents, above the images the run adapted to; the first thing a user looks at to judge an
adaptation, so it is upscaled to a legible size and every row is labelled."""

import os

import numpy as np
import torch

from stylegan2_ada.image_grid import LEGIBLE_WIDTH, save_image_grid

from . import generate

COLUMNS = 10              # seeds 0-9, and up to 10 training images below them
FILE = 'comparison.png'


def training_images(dataset, count):
    """The first `count` training images (originals, not mirrored copies) in [-1, 1]."""
    count = min(count, getattr(dataset, 'image_count', len(dataset)))
    images = np.stack([dataset[i][0] for i in range(count)])
    return torch.from_numpy(images).to(torch.float32) / 127.5 - 1


def write(run_dir, snapshot_path, log, manager=None, device='cpu', dataset=None):
    """Render seeds 0-9 from the snapshot (through its plugins, as `gda generate --pairs` does):
    source on the top row, adapted below, then the run's training images. Returns the path."""
    model = generate.open_model(snapshot_path, device=device, manager=manager, need_source=True)
    z = generate.seed_latents(range(COLUMNS), model.G.z_dim)
    source, adapted = generate.pairs(model, z)
    rows = [source.cpu(), adapted.cpu()]
    labels = ['source', 'adapted']
    if dataset is not None and len(dataset):
        shots = training_images(dataset, COLUMNS)
        if shots.shape[1:] == source.shape[1:]:
            filler = torch.ones([COLUMNS - len(shots), *shots.shape[1:]])   # white cells
            rows.append(torch.cat([shots, filler]))
            total = getattr(dataset, 'image_count', len(dataset))
            labels.append(f'target (10 of {total})' if total > COLUMNS else 'target')
    path = os.path.join(run_dir, FILE)
    save_image_grid(torch.cat(rows), path, columns=COLUMNS, min_width=LEGIBLE_WIDTH, row_labels=labels)
    log(f'{FILE}: source (top) and adapted (middle) generator on seeds 0-{COLUMNS - 1}'
        + (', training images (bottom)' if len(rows) == 3 else '')
        + f', from {os.path.basename(snapshot_path)}')
    return path
