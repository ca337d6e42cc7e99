"""Inverting target images into W+ of the source generator (RSSA §3.3, after Image2StyleGAN).

As the official RSSA code does: start every image from the mean w (mapping of 5120 random z),
optimise all W+ entries with Adam (lr 0.1, halved every 1000 steps) on LPIPS (VGG16) + MSE, with
constant noise inputs. gda uses NVIDIA's VGG16 TorchScript detector for LPIPS, the one its metrics
use; without it the inversion runs on MSE alone (the caller decides and warns). The codes feed
the latent space compression (compression.py) and `gda invert` saves them.
"""

import dataclasses

import numpy as np
import torch

from stylegan2_ada import detectors
from stylegan2_ada.errors import UserError

MEAN_SAMPLES = 5120
LR_HALVING_STEPS = 1000
BATCH = 4          # images inverted together (each keeps its own loss)
CODES_FORMAT = 'gda-rssa-codes-1'


@dataclasses.dataclass
class Inversion:
    codes: torch.Tensor        # [n, num_ws, w_dim] float32, CPU
    mse: torch.Tensor          # [n] reconstruction MSE (images in [-1, 1]) at the end
    lpips: torch.Tensor        # [n] LPIPS at the end (NaN without the detector)
    initial_mse: torch.Tensor  # [n] MSE of the starting point (the mean w)


@torch.no_grad()
def mean_w(G, seed=0, samples=MEAN_SAMPLES):
    """The average w of `samples` mapped z (the official code's 5120), seeded."""
    if G.c_dim:
        raise UserError('inverting into W+ needs an unconditional source generator (this one is '
                        f'conditioned on {G.c_dim} labels)')
    device = next(G.parameters()).device
    z = torch.randn([samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return G.mapping(z.to(device), None, skip_w_avg_update=True).mean(0)   # [num_ws, w_dim]


def reconstruction_losses(G, ws, target, lpips_detector):
    """Per-image (MSE, LPIPS or NaN) of G(ws) against target, both in [-1, 1]."""
    images = G.synthesis(ws, noise_mode='const')
    mse = (images - target).square().flatten(1).mean(1)
    if lpips_detector is None:
        return mse, torch.full_like(mse, float('nan'))
    return mse, detectors.lpips_distance(lpips_detector, images, target)


def invert(G, images, steps=1000, lr=0.1, lpips_detector=None, batch=BATCH, seed=0,
           progress=None):
    """uint8 images [n, C, H, W] -> Inversion; G is frozen (its parameters get no gradients).

    Images are inverted `batch` at a time; each keeps its own loss, so the result equals inverting
    them one by one. progress(steps_done) is called after every step.
    """
    device = next(G.parameters()).device
    images = torch.as_tensor(images)
    if tuple(images.shape[1:]) != (G.img_channels, G.img_resolution, G.img_resolution):
        raise UserError(f'the images are {list(images.shape[1:])} (C, H, W) but the source generates '
                        f'{[G.img_channels, G.img_resolution, G.img_resolution]}; convert them with '
                        f'`gda dataset`')
    G = G.eval().requires_grad_(False)
    start = mean_w(G, seed)
    results = []
    for first in range(0, len(images), batch):
        target = images[first:first + batch].to(device, torch.float32) / 127.5 - 1
        ws = start.unsqueeze(0).repeat(len(target), 1, 1).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([ws], lr=lr)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, LR_HALVING_STEPS, gamma=0.5)
        with torch.no_grad():
            initial_mse, _ = reconstruction_losses(G, ws, target, None)
        for _ in range(steps):
            mse, lpips = reconstruction_losses(G, ws, target, lpips_detector)
            loss = mse if lpips_detector is None else mse + lpips
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress(1)
        with torch.no_grad():
            mse, lpips = reconstruction_losses(G, ws, target, lpips_detector)
        results.append((ws.detach().cpu(), mse.cpu(), lpips.cpu(), initial_mse.cpu()))
    return Inversion(*[torch.cat(parts) for parts in zip(*results)])


def save_codes(path, inversion, source=''):
    """Write the codes as a .npz (arrays only: np.load reads it with allow_pickle=False)."""
    with open(path, 'wb') as f:
        np.savez(f, format=np.array(CODES_FORMAT), source=np.array(str(source)),
                 codes=inversion.codes.numpy(), mse=inversion.mse.numpy(),
                 lpips=inversion.lpips.numpy(), initial_mse=inversion.initial_mse.numpy())


def load_codes(path, num_ws, w_dim):
    """The [n, num_ws, w_dim] codes of a `gda invert` file, checked against the generator."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'codes' not in data.files or 'format' not in data.files or \
                    str(data['format']) != CODES_FORMAT:
                raise UserError(f'{path} is not a codes file written by `gda invert`')
            codes = torch.from_numpy(data['codes'].astype(np.float32))
    except (OSError, ValueError) as error:
        raise UserError(f'cannot read the codes file {path}: {error}') from None
    if codes.ndim != 3 or tuple(codes.shape[1:]) != (num_ws, w_dim) or len(codes) == 0:
        raise UserError(f'{path} holds codes of shape {list(codes.shape)}, but this source needs '
                        f'[n, {num_ws}, {w_dim}]; invert the targets with this source '
                        f'(`gda invert --network SOURCE`)')
    return codes


def lpips_detector(mode, path=None, device='cpu', warn=print):
    """NVIDIA's VGG16 for the LPIPS term, per `mode`: 'off' -> None; 'on' -> the detector or a
    UserError saying where to put it; 'auto' -> the detector, else a warning and None (MSE only)."""
    if mode == 'off':
        return None
    try:
        return detectors.load_detector('vgg16', path=path, device=device)
    except UserError as error:
        if mode == 'on':
            raise
        warn(f'inverting with MSE only, without the LPIPS term: {error}')
        return None
