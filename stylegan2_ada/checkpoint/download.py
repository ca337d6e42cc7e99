"""Fetch a checkpoint by http(s) URL once, then serve it from a cache directory.

Cache directory: $GDA_CACHE_DIR, else $DNNLIB_CACHE_DIR, else ~/.cache/gda. Files live under
<cache>/downloads/<md5 of URL>_<file name>, the layout of NVIDIA's dnnlib, so one cache serves both
tools; a file dropped straight into <cache>/ under its URL's file name is found too (the way to
provide a checkpoint to an offline machine). Downloads stream to a temporary file that replaces the
final name only once complete and of the size the server announced.
"""

import glob
import hashlib
import os
import re
import sys
import urllib.parse

from ..errors import UserError
from .atomic import atomic_write

CACHE_ENV = 'GDA_CACHE_DIR'
DNNLIB_CACHE_ENV = 'DNNLIB_CACHE_DIR'
_CHUNK = 1 << 20


def is_url(source):
    return isinstance(source, str) and re.match(r'https?://', source) is not None


def cache_dir():
    """The cache directory in effect (not created here)."""
    for name in (CACHE_ENV, DNNLIB_CACHE_ENV):
        if os.environ.get(name):
            return os.path.abspath(os.path.expanduser(os.environ[name]))
    return os.path.join(os.path.expanduser('~'), '.cache', 'gda')


def _file_name(url):
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    return re.sub(r'[^0-9a-zA-Z-._]', '_', name)


def cache_path(url, cache=None):
    """Where a download of `url` is stored."""
    md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    return os.path.join(cache or cache_dir(), 'downloads', f'{md5}_{_file_name(url)}')


def find_cached(url, cache=None):
    """A cached copy of `url`, or None."""
    cache = cache or cache_dir()
    md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    candidates = sorted(glob.glob(os.path.join(glob.escape(cache), 'downloads', f'{md5}_*')))
    candidates.append(os.path.join(cache, _file_name(url)))
    for path in candidates:
        if os.path.isfile(path) and not path.endswith('.tmp') and os.path.getsize(path) > 0:
            return path
    return None


def _offline(url, reason):
    return UserError(f'cannot download {url} ({reason}): no network; download it elsewhere and pass the '
                     f'local path, or set {CACHE_ENV} to a folder that holds it as {_file_name(url)}')


def download(url, cache=None, timeout=60, verbose=False):
    """Local path of `url`'s contents, downloading it into the cache unless already there."""
    import requests  # imported here: only URL sources need it

    found = find_cached(url, cache)
    if found:
        return found
    path = cache_path(url, cache)
    if verbose:
        print(f'Downloading {url} ...', file=sys.stderr, flush=True)
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise UserError(f'cannot download {url}: the server answered HTTP {response.status_code}')
            expected = response.headers.get('Content-Length')
            encoded = response.headers.get('Content-Encoding', 'identity') != 'identity'
            received = 0
            with atomic_write(path) as file:
                for chunk in response.iter_content(_CHUNK):
                    file.write(chunk)
                    received += len(chunk)
                if received == 0:
                    raise UserError(f'cannot download {url}: the server sent an empty file')
                if expected is not None and not encoded and received != int(expected):
                    raise UserError(f'download of {url} is incomplete: got {received} of {expected} bytes; '
                                    f'try again')
    except (requests.ConnectionError, requests.Timeout) as error:
        raise _offline(url, type(error).__name__) from None
    except requests.exceptions.ChunkedEncodingError:
        raise UserError(f'download of {url} is incomplete: the connection broke off; try again') from None
    except requests.RequestException as error:
        raise UserError(f'cannot download {url}: {error}') from None
    except OSError as error:
        raise UserError(f'cannot write the download of {url} to {path}: {error}; set {CACHE_ENV} to a '
                        f'writable folder') from None
    return path
