"""The public detector loader: path > environment variable > cache > download; a clear error
offline; NVIDIA's call conventions (input range, grayscale, LPIPS) on scripted stand-ins."""

import hashlib
import http.server
import pathlib
import threading

import pytest
import torch

from stylegan2_ada import detectors
from stylegan2_ada.checkpoint.download import cache_path
from stylegan2_ada.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('DNNLIB_CACHE_DIR', raising=False)
    for item in detectors.DETECTORS.values():
        monkeypatch.delenv(item.env, raising=False)
    monkeypatch.setattr(detectors, 'URL_BASE', 'http://127.0.0.1:9/unreachable/')   # discard port: refused
    monkeypatch.setenv('NO_PROXY', '127.0.0.1')
    return tmp_path / 'cache'


def test_explicit_path_beats_the_environment_and_the_cache(tmp_path, cache, monkeypatch, standins):
    explicit = standins.save(standins.Inception(dim=5), tmp_path / 'explicit.pt')
    env = standins.save(standins.Inception(dim=6), tmp_path / 'env.pt')
    cache.mkdir(parents=True)
    standins.save(standins.Inception(dim=7), cache / 'inception-2015-12-05.pt')   # dropped in by hand
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def dim(**kwargs):
        return detectors.inception_features(detectors.load_detector('inception', **kwargs), images).shape[1]
    assert dim() == 7
    monkeypatch.setenv('GDA_INCEPTION', str(env))
    assert dim() == 6
    assert dim(path=explicit) == 5
    assert detectors.load_detector('inception', path=explicit) is detectors.load_detector('inception', path=explicit)
    monkeypatch.setenv('GDA_INCEPTION', str(tmp_path / 'missing.pt'))
    with pytest.raises(UserError, match=r'\$GDA_INCEPTION .*missing.pt.* is not a file'):
        detectors.load_detector('inception')


def test_offline_without_the_file_names_it_and_where_to_put_it(cache):
    with pytest.raises(UserError) as error:
        detectors.load_detector('vgg16')
    message = str(error.value)
    assert message == ('the detector vgg16.pt (VGG16, for precision/recall and LPIPS) is missing (offline): '
                       'download http://127.0.0.1:9/unreachable/vgg16.pt and set GDA_VGG16 to its '
                       'path (gda metrics: --vgg16 PATH)')
    assert message.count('http') == 1 and len(message) < 200
    with pytest.raises(UserError, match='inception-2015-12-05.pt.*not in the cache'):
        detectors.detector_path('inception', allow_download=False)
    with pytest.raises(UserError, match='unknown detector'):
        detectors.load_detector('alexnet')


def test_downloads_from_the_url_once_into_the_cache(cache, monkeypatch, standins, tmp_path):
    body = standins.save(standins.VGG16(), tmp_path / 'vgg16.pt').read_bytes()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(detectors, 'URL_BASE', f'http://127.0.0.1:{server.server_port}/metrics/')
        path = detectors.detector_path('vgg16')
        assert path == cache_path(detectors.spec('vgg16').url)
        assert detectors.detector_path('vgg16') == path and hits == ['/metrics/vgg16.pt']
        assert hashlib.sha256(pathlib.Path(path).read_bytes()).digest() == hashlib.sha256(body).digest()
        assert detectors.load_detector('vgg16') is not None
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_that_is_not_torchscript_is_refused(tmp_path, cache):
    bogus = tmp_path / 'inception.pt'
    bogus.write_bytes(b'not a model')
    with pytest.raises(UserError, match='not a TorchScript detector'):
        detectors.load_detector('inception', path=bogus)


def test_detector_input_range_and_channels():
    gray = torch.full([2, 1, 4, 4], -1.0, requires_grad=True)
    x = detectors.to_detector_input(gray)
    assert x.shape == (2, 3, 4, 4) and (x == 0).all()
    x.sum().backward()   # differentiable: plugins use LPIPS as a loss
    assert gray.grad.abs().sum() > 0
    assert (detectors.to_detector_input(torch.ones(1, 3, 2, 2)) == 255).all()
    rgba = torch.arange(4, dtype=torch.uint8).view(1, 4, 1, 1).repeat(1, 1, 2, 2)
    assert detectors.to_detector_input(rgba)[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(UserError, match='not 5'):
        detectors.to_detector_input(torch.zeros(1, 5, 2, 2))


def test_lpips_distance_and_digest(standins):
    vgg = standins.script(standins.VGG16())
    a = torch.rand(3, 3, 16, 16) * 2 - 1
    b = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.equal(detectors.lpips_distance(vgg, a, a), torch.zeros(3))
    assert (detectors.lpips_distance(vgg, a, b) > 0).all()
    big = torch.rand(1, 3, 320, 320) * 2 - 1   # area-downsampled to 256 first
    small = torch.nn.functional.interpolate(big, size=(256, 256), mode='area')
    assert torch.allclose(detectors.lpips_features(vgg, big), detectors.lpips_features(vgg, small), atol=1e-5)
    assert detectors.detector_digest(vgg) == detectors.detector_digest(standins.script(standins.VGG16()))
    assert detectors.detector_digest(vgg) != detectors.detector_digest(standins.script(standins.VGG16(dim=8)))
