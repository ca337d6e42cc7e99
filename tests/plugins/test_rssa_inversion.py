"""rssa's inversion into W+ (Image2StyleGAN-style) and `gda invert`: it lowers the reconstruction
error, uses NVIDIA's VGG16 format for LPIPS (a tiny TorchScript stand-in here), falls back to MSE
with a warning in auto mode, and fails with one clear line when LPIPS is required but missing."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import main
from gda_plugins.rssa import inversion
from stylegan2_ada import detectors
from stylegan2_ada.errors import UserError

from gda_testkit import metric_standins as standins
from gda_testkit import plugins as HP


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No VGG16 anywhere: empty cache, no $GDA_VGG16, and downloads fail as they do offline."""
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('GDA_VGG16', raising=False)

    def no_network(url, *args, **kwargs):
        raise UserError(f'cannot download {url} (offline)')
    monkeypatch.setattr(detectors, 'download', no_network)


@pytest.fixture(scope='module')
def vgg16(tmp_path_factory):
    return str(standins.save(standins.VGG16(), tmp_path_factory.mktemp('vgg') / 'vgg16.pt'))


@pytest.fixture(scope='module')
def reachable():
    """The tiny source and three images it can generate (so an inversion can reach them)."""
    G, _ = HP.tiny_networks()
    torch.manual_seed(1)
    with torch.no_grad():
        images = G(torch.randn(3, G.z_dim), None, noise_mode='const')
    return G, ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def test_inversion_lowers_the_reconstruction_error_of_every_image(reachable):
    G, images = reachable
    result = inversion.invert(G, images, steps=20)
    assert result.codes.shape == (3, G.num_ws, G.w_dim)
    assert (result.mse < 0.5 * result.initial_mse).all(), (result.initial_mse, result.mse)
    assert torch.isnan(result.lpips).all()                       # no detector: MSE only
    assert all(p.grad is None for p in G.parameters())           # G stays untouched


def test_inverting_together_equals_inverting_one_by_one(reachable):
    G, images = reachable
    together = inversion.invert(G, images, steps=5, batch=3)
    alone = inversion.invert(G, images[1:2], steps=5, batch=1)
    assert torch.allclose(together.codes[1], alone.codes[0], atol=1e-5)


def test_the_start_is_the_mean_w_of_the_source(reachable):
    G, images = reachable
    start = inversion.mean_w(G)
    assert start.shape == (G.num_ws, G.w_dim)
    assert torch.allclose(start[0], start[-1])                   # one w broadcast to all entries
    assert torch.allclose(inversion.invert(G, images[:1], steps=0).codes[0], start)


def test_lpips_through_the_vgg16_detector_format(reachable, vgg16):
    G, images = reachable
    detector = detectors.load_detector('vgg16', path=vgg16)
    start = inversion.mean_w(G).unsqueeze(0).repeat(3, 1, 1)
    target = images.to(torch.float32) / 127.5 - 1
    _, lpips_start = inversion.reconstruction_losses(G, start, target, detector)
    result = inversion.invert(G, images, steps=20, lpips_detector=detector)
    assert torch.isfinite(result.lpips).all() and (result.lpips < lpips_start).all()


def test_codes_files_round_trip_and_are_checked(tmp_path, reachable):
    G, images = reachable
    result = inversion.invert(G, images, steps=2)
    path = tmp_path / 'codes.npz'
    inversion.save_codes(path, result, source='tiny')
    assert torch.equal(inversion.load_codes(path, G.num_ws, G.w_dim), result.codes)
    with pytest.raises(UserError, match=r'holds codes of shape \[3, 6, 16\], but this source needs '
                                         r'\[n, 8, 16\]'):
        inversion.load_codes(path, 8, G.w_dim)
    np.savez(tmp_path / 'other.npz', codes=np.zeros([1, 6, 16]))
    with pytest.raises(UserError, match='not a codes file written by `gda invert`'):
        inversion.load_codes(tmp_path / 'other.npz', 6, 16)
    with pytest.raises(UserError, match='cannot read the codes file'):
        inversion.load_codes(tmp_path / 'missing.npz', 6, 16)


def invert_cli(tiny, out, *args):
    data, source = tiny
    return CliRunner().invoke(main, ['invert', '--network', source, '--data', data, '--out',
                                     str(out), '--steps', '3', *args])


def test_gda_invert_writes_codes_with_lpips(tiny, tmp_path, vgg16):
    result = invert_cli(tiny, tmp_path / 'codes.npz', '--vgg16', vgg16, '--lpips', 'on')
    assert result.exit_code == 0, result.output
    assert 'Wrote' in result.output and '6 codes of shape [6, 16]' in result.output
    assert 'LPIPS' in result.output and 'Warning' not in result.output
    with np.load(tmp_path / 'codes.npz', allow_pickle=False) as data:
        assert data['codes'].shape == (6, 6, 16) and np.isfinite(data['lpips']).all()


def test_gda_invert_falls_back_to_mse_with_a_warning_when_vgg16_is_unavailable(
        tiny, tmp_path, offline):
    result = invert_cli(tiny, tmp_path / 'codes.npz')
    assert result.exit_code == 0, result.output
    assert 'Warning: inverting with MSE only, without the LPIPS term' in result.output
    assert 'vgg16.pt' in result.output and (tmp_path / 'codes.npz').exists()


def test_gda_invert_requiring_lpips_offline_is_one_clear_error(tiny, tmp_path, offline):
    result = invert_cli(tiny, tmp_path / 'codes.npz', '--lpips', 'on')
    assert result.exit_code == 2
    assert 'the detector vgg16.pt' in result.output and 'GDA_VGG16' in result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'codes.npz').exists()


def test_gda_invert_rejects_a_vgg16_path_with_lpips_off(tiny, tmp_path, vgg16):
    result = invert_cli(tiny, tmp_path / 'codes.npz', '--vgg16', vgg16, '--lpips', 'off')
    assert result.exit_code == 2 and '--vgg16 given with --lpips off' in result.output


def test_gda_invert_rejects_a_dataset_of_another_resolution(tiny, tmp_path):
    data = HP.write_images(tmp_path / 'big', count=2, res=32)
    result = CliRunner().invoke(main, ['invert', '--network', tiny[1], '--data', data, '--out',
                                       str(tmp_path / 'c.npz'), '--lpips', 'off'])
    assert result.exit_code == 2 and 'convert them with `gda dataset`' in result.output
