"""Fixtures for the metric tests: scripted stand-in detectors, tiny generators, image folders
(the `standins` fixture, gda_testkit.metric_standins, is in tests/conftest.py)."""

import pathlib

import numpy as np
import PIL.Image
import pytest
import torch


@pytest.fixture(scope='session')
def detector_files(tmp_path_factory, standins):
    """{'inception': path, 'vgg16': path} of scripted stand-ins saved as TorchScript files."""
    folder = tmp_path_factory.mktemp('detectors')
    return dict(inception=str(standins.save(standins.Inception(), folder / 'inception.pt')),
                vgg16=str(standins.save(standins.VGG16(), folder / 'vgg16.pt')))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own download/statistics cache and no detector variables."""
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    for name in ('DNNLIB_CACHE_DIR', 'GDA_INCEPTION', 'GDA_VGG16', 'GDA_HED'):
        monkeypatch.delenv(name, raising=False)


def tiny_generator(seed=0, c_dim=0, resolution=16):
    from stylegan2_ada.networks import Generator
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    return G.eval().requires_grad_(False)


@pytest.fixture
def make_generator():
    return tiny_generator


def write_images(folder, images):
    """Save uint8 [N, C, H, W] images as PNGs in `folder`; returns the folder as str."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(torch.as_tensor(images)):
        pixels = image.permute(1, 2, 0).numpy().astype(np.uint8)
        PIL.Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(folder / f'{index:04d}.png')
    return str(folder)


@pytest.fixture
def image_folder():
    return write_images


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """Tiny networks run faster on one thread than fighting for the machine's shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
