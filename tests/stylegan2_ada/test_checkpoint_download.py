"""URL and preset sources: streamed download into the cache, served from 127.0.0.1 here."""

import hashlib
import http.server
import os
import socket
import threading

import pytest

import stylegan2_ada
from stylegan2_ada.checkpoint.download import cache_dir
from stylegan2_ada.checkpoint.presets import PRESETS, resolve
from stylegan2_ada.errors import UserError


class _Server:
    """A tiny HTTP server: path -> (body, announced length or None); counts requests per path."""

    def __init__(self):
        self.files, self.hits = {}, {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body, length = server.files[self.path]
                self.send_response(200)
                self.send_header('Content-Length', str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f'http://127.0.0.1:{self.httpd.server_port}{path}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = _Server()
    yield server
    server.close()


@pytest.fixture
def pickle_bytes(ckpt):
    return ckpt.nvidia_pickle_bytes(ckpt.tiny_networks('tiny32_skip_resnet', augment=False))


def test_url_downloads_once_then_loads_from_cache(server, pickle_bytes, isolated_cache):
    server.files['/nets/tiny.pkl'] = (pickle_bytes, None)
    url = server.url('/nets/tiny.pkl')
    first = stylegan2_ada.load(url)
    assert first['origin']['url'] == url and first['G'] is not None
    cached = first['origin']['path']
    assert cached.startswith(str(isolated_cache)) and cached.endswith('_tiny.pkl')
    assert open(cached, 'rb').read() == pickle_bytes
    assert first['origin']['sha256'] == hashlib.sha256(pickle_bytes).hexdigest()
    second = stylegan2_ada.load(url)
    assert server.hits['/nets/tiny.pkl'] == 1 and second['origin']['path'] == cached
    leftovers = [name for name in os.listdir(os.path.dirname(cached)) if name.endswith('.tmp')]
    assert leftovers == []


def test_short_download_is_an_error_and_leaves_no_file(server, pickle_bytes, isolated_cache):
    server.files['/short.pkl'] = (pickle_bytes[:1000], len(pickle_bytes))
    with pytest.raises(UserError, match='incomplete'):
        stylegan2_ada.load(server.url('/short.pkl'))
    downloads = isolated_cache / 'downloads'
    assert not downloads.exists() or os.listdir(downloads) == []


def test_http_error_is_reported(server, isolated_cache):
    with pytest.raises(UserError, match='HTTP 404'):
        stylegan2_ada.load(server.url('/missing.pkl'))


def test_offline_error_says_what_to_do(isolated_cache):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserError) as error:
        stylegan2_ada.load(f'http://127.0.0.1:{port}/ffhq.pkl')
    message = str(error.value)
    assert 'no network' in message and 'pass the local path' in message and 'GDA_CACHE_DIR' in message
    assert '\n' not in message


def test_preset_served_from_a_file_dropped_into_the_cache(pickle_bytes, isolated_cache):
    isolated_cache.mkdir(parents=True)
    (isolated_cache / 'ffhq.pkl').write_bytes(pickle_bytes)
    data = stylegan2_ada.load('ffhq')
    assert data['origin']['url'] == PRESETS['ffhq'] and data['origin']['reference'] == 'ffhq'
    assert type(data['G']).__name__ == 'Generator'


def test_dnnlib_cache_layout_is_read(tmp_path, monkeypatch, pickle_bytes, isolated_cache):
    monkeypatch.delenv('GDA_CACHE_DIR')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib'))
    url = PRESETS['afhqdog']
    md5 = hashlib.md5(url.encode()).hexdigest()
    (tmp_path / 'dnnlib' / 'downloads').mkdir(parents=True)
    (tmp_path / 'dnnlib' / 'downloads' / f'{md5}_afhqdog.pkl').write_bytes(pickle_bytes)
    path, resolved = resolve('afhqdog')
    assert resolved == url and path.endswith(f'{md5}_afhqdog.pkl')


def test_cache_dir_precedence(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib'))
    assert cache_dir() == str(isolated_cache)
    monkeypatch.delenv('GDA_CACHE_DIR')
    assert cache_dir() == str(tmp_path / 'dnnlib')
    monkeypatch.delenv('DNNLIB_CACHE_DIR')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert cache_dir() == str(tmp_path / 'home' / '.cache' / 'gda')


def test_presets_are_nvidia_urls():
    expected = {'ffhq256', 'ffhq512', 'ffhq1024', 'celebahq256', 'lsundog256', 'ffhq', 'metfaces', 'afhqcat',
                'afhqdog', 'afhqwild', 'brecahad', 'cifar10'}
    assert set(PRESETS) == expected
    base = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/'
    assert all(url.startswith(base) and url.endswith('.pkl') for url in PRESETS.values())
    assert PRESETS['ffhq256'].endswith('transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl')


def test_unknown_source_names_the_presets(isolated_cache):
    with pytest.raises(UserError, match='neither a file, an http.s. URL nor a preset name .*ffhq256'):
        stylegan2_ada.load('ffhq128')
