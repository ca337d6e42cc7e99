"""NVIDIA's metric detectors (TorchScript Inception-v3 and VGG16): found, loaded once, called one way.

One loader for everything that needs them: the metrics (FID, KID, IS, precision/recall,
intra-cluster LPIPS) and the plugins that use VGG16 features or LPIPS (rssa, disp). A detector
file comes from, in order: an explicit path, its environment variable, the download cache of
stylegan2_ada.checkpoint.download (a copy dropped into the cache folder under its own name
counts), or a download from NVIDIA's URL. Offline without the file, the error names the file and
where to put it.

The files are TorchScript programs: torch's TorchScript interpreter runs them, which cannot call
arbitrary Python, and gda never unpickles Python objects from them. Call conventions (NVIDIA's):

- inception: input [N, 3, H, W] float in [0, 255], resized to 299 inside; `return_features=True`
  gives [N, 2048] pool features; `no_output_bias=True` gives the 1008 class probabilities without
  the output bias (NVIDIA's file applies the softmax itself; logits from a stand-in are soft-maxed
  here, see inception_probabilities).
- vgg16: input [N, 3, H, W] float in [0, 255], resized to 224 inside unless `resize_images=False`;
  `return_features=True` gives [N, 4096] fc7 features; `return_lpips=True` gives LPIPS-normalised
  features whose squared L2 difference, summed, is the LPIPS distance.
"""

import dataclasses
import hashlib
import os
import warnings

import torch
import torch.nn.functional as F

from .checkpoint.download import download, find_cached
from .errors import UserError

URL_BASE = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/'
LPIPS_MAX_RESOLUTION = 256  # NVIDIA's projector area-downsamples larger images before LPIPS


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    name: str      # what callers ask for
    file: str      # NVIDIA's file name (also the name looked for in the cache folder)
    env: str       # environment variable holding a local path
    purpose: str   # what it is for, for error messages

    @property
    def url(self):
        return URL_BASE + self.file


DETECTORS = {
    'inception': DetectorSpec('inception', 'inception-2015-12-05.pt', 'GDA_INCEPTION',
                              'Inception-v3, for FID, KID and IS'),
    'vgg16': DetectorSpec('vgg16', 'vgg16.pt', 'GDA_VGG16', 'VGG16, for precision/recall and LPIPS'),
}

_loaded = {}  # (real path, mtime, size, device) -> module, so metrics and plugins share one copy


def spec(name):
    if name not in DETECTORS:
        raise UserError(f'unknown detector {name!r}; known: {", ".join(DETECTORS)}')
    return DETECTORS[name]


def _missing(item, reason):
    """One short line: which file, why, its URL once, and how to point gda at a local copy."""
    return UserError(f'the detector {item.file} ({item.purpose}) is missing ({reason}): '
                     f'download {item.url} and set {item.env} to its path (gda metrics: '
                     f'--{item.name} PATH)')


def _download_failure(error, url):
    """The download error in a few words, without the URL the message gives anyway."""
    text = str(error)
    if 'no network' in text:
        return 'offline'
    return text.replace(f'cannot download {url}', 'download failed').replace(url, 'it')


def detector_path(name, path=None, allow_download=True):
    """Local file of detector `name`: `path`, else $<env>, else the cache, else a download."""
    item = spec(name)
    for given, origin in ((path, 'the given path'), (os.environ.get(item.env), f'${item.env}')):
        if given:
            given = os.path.expanduser(os.fspath(given))
            if not os.path.isfile(given):
                raise UserError(f'{origin} for the detector {item.file} ({given}) is not a file')
            return given
    cached = find_cached(item.url)
    if cached:
        return cached
    if not allow_download:
        raise _missing(item, 'it is not in the cache')
    try:
        return download(item.url, verbose=True)
    except UserError as error:
        raise _missing(item, _download_failure(error, item.url)) from None


def load_detector(name, path=None, device='cpu', allow_download=True):
    """The TorchScript module of detector `name` in eval mode on `device` (loaded once per file)."""
    file = os.path.realpath(detector_path(name, path, allow_download))
    stat = os.stat(file)
    key = (file, stat.st_mtime_ns, stat.st_size, str(torch.device(device)))
    if key not in _loaded:
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; NVIDIA's files are TorchScript
                warnings.simplefilter('ignore', DeprecationWarning)
                module = torch.jit.load(file, map_location=device)
        except (RuntimeError, ValueError) as error:
            raise UserError(f'{file} is not a TorchScript detector ({spec(name).file} expected): '
                            f'{str(error).splitlines()[0]}') from None
        _loaded[key] = module.eval()
    return _loaded[key]


def detector_digest(module):
    """sha256 of a detector's code and weights: what cached statistics are keyed on."""
    digest = hashlib.sha256(getattr(module, 'code', type(module).__name__).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def to_detector_input(images, drange=(-1, 1)):
    """[N, C, H, W] images -> float32 [N, 3, H, W] in [0, 255], differentiable for float input.

    uint8 images are taken as [0, 255]; float ones as `drange`. One channel (and gray+alpha) is
    repeated to three, an alpha channel is dropped, as NVIDIA's metrics do for grayscale.
    """
    if images.dtype == torch.uint8:
        x = images.to(torch.float32)
    else:
        lo, hi = drange
        x = (images.to(torch.float32) - lo) * (255 / (hi - lo))
    channels = x.shape[1]
    if channels in (1, 2):
        x = x[:, :1].repeat(1, 3, 1, 1)
    elif channels == 4:
        x = x[:, :3]
    elif channels != 3:
        raise UserError(f'detectors take 1, 2, 3 or 4 image channels, not {channels}')
    return x


def inception_features(detector, images, drange=(-1, 1)):
    """[N, 2048] Inception pool features (FID, KID)."""
    return detector(to_detector_input(images, drange), return_features=True)


def inception_probabilities(detector, images, drange=(-1, 1)):
    """[N, 1008] class probabilities without the output bias (IS).

    NVIDIA's file returns probabilities; an output whose rows are not distributions (logits, as a
    stand-in may give) is soft-maxed, so both conventions give the same score.
    """
    out = detector(to_detector_input(images, drange), no_output_bias=True).to(torch.float64)
    is_distribution = bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3)
    return out if is_distribution else out.softmax(1)


def vgg16_features(detector, images, drange=(-1, 1)):
    """[N, 4096] VGG16 fc7 features (precision/recall)."""
    return detector(to_detector_input(images, drange), return_features=True)


def lpips_features(detector, images, drange=(-1, 1)):
    """Flat LPIPS features at the images' own resolution (area-downsampled above 256 px)."""
    x = to_detector_input(images, drange)
    if x.shape[2] > LPIPS_MAX_RESOLUTION:
        x = F.interpolate(x, size=(LPIPS_MAX_RESOLUTION, LPIPS_MAX_RESOLUTION), mode='area')
    return detector(x, resize_images=False, return_lpips=True).flatten(1)


def lpips_distance(detector, a, b, drange=(-1, 1)):
    """[N] LPIPS distances between image batches a and b (same shape)."""
    return (lpips_features(detector, a, drange) - lpips_features(detector, b, drange)).square().sum(1)
