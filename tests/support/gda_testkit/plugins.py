"""Test helpers for the plugin host: tiny data and source networks, plugin managers, short runs.

`from gda_testkit import plugins as HP`. Networks are 16 px with at most 16 channels, so a
fine-tuning run of a few iterations takes about a second on one thread.
"""

import os

import numpy as np
import PIL.Image
import torch

from gda_core import training
from gda_core.plugins import PluginManager
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.networks import Discriminator, Generator

Z_DIM = 16


def write_images(folder, count=6, res=16, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        pixels = (rng.rand(res, res, 3) * 255).astype(np.uint8)
        PIL.Image.fromarray(pixels).save(os.path.join(folder, f'{i}.png'))
    return str(folder)


def tiny_networks(seed=0, c_dim=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=Z_DIM, c_dim=c_dim, w_dim=Z_DIM, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=128,
                      channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2))
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def write_source(path, seed=0):
    """A gda snapshot holding a tiny G (also as G_ema) and D: a --source for fine-tuning."""
    G, D = tiny_networks(seed)
    save_snapshot(str(path), dict(G=G, D=D, G_ema=G))
    return str(path)


def manager(*plugins, entry_points=False):
    """A plugin manager holding `plugins` ((name, object) pairs), with or without entry points."""
    result = PluginManager()
    if entry_points:
        result.load_entry_points()
    for name, obj in plugins:
        result.register(obj, name, distribution=f'test-{name}', version='1.0')
    return result


def config(outdir, data, source, plugins=(), plugin_options=None, iters=2, **overrides):
    """A training configuration as cmd_train builds it: batch 4, 2 iterations, a tick each."""
    options = dict(kimg=None, iters=iters, batch=4, batch_gpu=None, lr=None, gamma=None,
                   ema_kimg=None, ada_target=None, cbase=None, cmax=None, map=None, zdim=None)
    options.update({k: overrides.pop(k) for k in list(overrides) if k in options})
    result = dict(outdir=str(outdir), data=data, source=source, cfg=None, desc=None,
                  options=options, tick=0.004, snap=1, mirror=False, cond=False, seed=0,
                  aug=None, p=None, augpipe=None, device='cpu', plugins=list(plugins),
                  plugin_options=plugin_options or {})
    result.update(overrides)
    return result


def train(outdir, data, source, plugins_manager, plugins=(), plugin_options=None, **overrides):
    """Run training quietly; returns the run directory."""
    return training.run(config(outdir, data, source, plugins, plugin_options, **overrides),
                        log=lambda *args, **kwargs: None, manager=plugins_manager)


def snapshot_path(run_dir):
    names = sorted(name for name in os.listdir(run_dir) if name.startswith('network-snapshot-'))
    return os.path.join(run_dir, names[-1])


class FastCPU:
    """One thread and no oneDNN: for tiny convolutions their set-up costs more than it saves."""

    def __enter__(self):
        self.saved = torch.get_num_threads(), torch.backends.mkldnn.enabled
        torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = False

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved[0])
        torch.backends.mkldnn.enabled = self.saved[1]
