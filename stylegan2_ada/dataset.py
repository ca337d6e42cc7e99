"""Image datasets for training: a folder or zip of images, optional labels in dataset.json.

Same layout, label format and item API as NVIDIA's ImageFolderDataset (uint8 [C, H, W] images,
float32 labels, one-hot for integer labels, x-flip doubling, a seeded max_size subset). The
difference is that problems surface at construction, each naming the files concerned, instead of
as a crash deep in training: empty, unreadable and non-image files, unsupported pixel formats,
mixed resolutions or channel counts, non-square or non-power-of-two images, or a channel count
that the network cannot take. Small datasets (few-shot ones) are decoded completely up front;
larger ones have their headers read up front and are decoded on use.
"""

import contextlib
import io
import json
import os
import zipfile
import zlib

import numpy as np
import PIL.Image

from .errors import UserError

try:
    import pyspng
except ImportError:  # pragma: no cover - pyspng is a dependency but optional at run time
    pyspng = None

FULL_CHECK_LIMIT = 2000  # decode every image up front when there are at most this many
LABELS_FILE = 'dataset.json'
_CHANNELS = {'1': 1, 'L': 1, 'LA': 2, 'RGB': 3, 'RGBA': 4}
_FIX = 'fix them with `gda dataset SRC DEST.zip --resolution R`'


def image_extensions():
    """File extensions PIL can open (what counts as an image file)."""
    PIL.Image.init()
    return {ext for ext, fmt in PIL.Image.registered_extensions().items() if fmt in PIL.Image.OPEN}


def _is_hidden(name):
    return any(part.startswith('.') or part == '__MACOSX' for part in name.split('/'))


class FileSource:
    """The files of a folder or zip archive, named relative to it with '/' separators."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._zip = None
        if os.path.isdir(self.path):
            self.kind = 'dir'
            names = [os.path.relpath(os.path.join(root, file), self.path).replace(os.sep, '/')
                     for root, _dirs, files in os.walk(self.path) for file in files]
        elif os.path.isfile(self.path) and zipfile.is_zipfile(self.path):
            self.kind = 'zip'
            with self._zip_errors():
                names = [info.filename for info in self._archive().infolist() if not info.is_dir()]
        elif _looks_like_zip(self.path):
            raise UserError(f'dataset {self.path} is a damaged zip archive (truncated: its central '
                            f'directory is missing); download or build it again')
        elif os.path.exists(self.path):
            raise UserError(f'dataset {self.path} is neither a folder nor a zip archive')
        else:
            raise UserError(f'dataset {self.path} does not exist')
        self.names = sorted(name for name in names if not _is_hidden(name))

    def _archive(self):
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def read(self, name):
        if self.kind == 'dir':
            with open(os.path.join(self.path, name), 'rb') as file:
                return file.read()
        with self._zip_errors(name):
            return self._archive().read(name)

    @contextlib.contextmanager
    def _zip_errors(self, member=None):
        """zipfile's many failures of a damaged, encrypted or exotic archive as one UserError
        naming the archive and the member (a corrupted download, not a bug)."""
        where = f'dataset {self.path}' + (f': member {member}' if member else '')
        try:
            yield
        except NotImplementedError as error:
            raise UserError(f'{where} uses a compression Python cannot read ({error}); repack it '
                            f'as a plain zip or give the extracted folder') from None
        except RuntimeError as error:
            if 'encrypted' not in str(error) and 'password' not in str(error):
                raise
            raise UserError(f'{where} is encrypted; gda reads no password-protected archives: '
                            f'extract it and give the folder') from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            reason = 'its CRC check fails' if 'CRC' in str(error) else str(error)
            raise UserError(f'{where} is corrupt ({reason}); the archive is damaged (an '
                            f'interrupted download?): download or build it again') from None

    def close(self):
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self):
        return dict(self.__dict__, _zip=None)  # each DataLoader worker opens its own handle


def _looks_like_zip(path):
    """A file that starts as a zip archive does (or is named one) but has no readable end."""
    if not os.path.isfile(path):
        return False
    with open(path, 'rb') as file:
        return file.read(4) == b'PK\x03\x04' or path.lower().endswith('.zip')


def channels_of(image):
    """Channel count a decoded PIL image gives, or None for a format training does not read."""
    if image.mode == 'P':
        return 4 if 'transparency' in image.info else 3
    return _CHANNELS.get(image.mode)


def probe(data):
    """(width, height, channels, mode) from an image file's header; ValueError if unreadable."""
    if not data:
        raise ValueError('empty file')
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, channels_of(image), image.mode
    except (PIL.UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f'not a readable image ({error})') from None


def decode(data):
    """uint8 [H, W, C] pixels of an image file; ValueError if it does not decode completely."""
    try:
        if pyspng is not None and data[:8] == b'\x89PNG\r\n\x1a\n':
            with PIL.Image.open(io.BytesIO(data)) as image:
                plain_png = image.mode in ('L', 'RGB', 'RGBA')  # what pyspng decodes as is
            array = pyspng.load(data) if plain_png else None
            if array is not None and array.dtype == np.uint8:  # 16-bit RGB goes through pillow
                return array[:, :, np.newaxis] if array.ndim == 2 else array
        with PIL.Image.open(io.BytesIO(data)) as image:
            channels = channels_of(image)
            if channels is None:
                raise ValueError(f'pixel format {image.mode} is not supported')
            if image.mode in ('1', 'P'):
                image = image.convert({1: 'L', 3: 'RGB', 4: 'RGBA'}[channels])
            array = np.asarray(image, dtype=np.uint8)
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, RuntimeError) as error:
        raise ValueError(f'corrupt image ({error})') from None
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def _list(items, limit=5):
    shown = ', '.join(items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


class ImageFolderDataset:
    """Images of a folder or zip as (uint8 [C, H, W], float32 label) items; refuses unusable data.

    resolution / channels: what the network needs (None: anything consistent). check: 'full' decodes
    every image up front, 'header' reads headers only, 'auto' decodes up to FULL_CHECK_LIMIT images.
    """

    def __init__(self, path, resolution=None, channels=None, use_labels=False, max_size=None, xflip=False,
                 random_seed=0, check='auto'):
        if check not in ('auto', 'full', 'header'):
            raise UserError(f"check must be 'auto', 'full' or 'header', not {check!r}")
        self.source = FileSource(path)
        self.name = os.path.splitext(os.path.basename(os.path.normpath(self.source.path)))[0]
        extensions = image_extensions()
        images = [name for name in self.source.names if os.path.splitext(name)[1].lower() in extensions]
        others = [name for name in self.source.names if name not in images and name != LABELS_FILE]
        if others:
            raise UserError(f'dataset {path}: {len(others)} file(s) that are not images: {_list(others)}; '
                            f'remove them (only images and {LABELS_FILE} belong in a dataset)')
        if not images:
            raise UserError(f'dataset {path} holds no images')
        self._all_names = images
        self._raw_idx = np.arange(len(images), dtype=np.int64)
        if max_size is not None and max_size < len(images):
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])
        self._names = [images[i] for i in self._raw_idx]
        full = check == 'full' or (check == 'auto' and len(self._names) <= FULL_CHECK_LIMIT)
        self.image_shape = self._check_images(full, resolution, channels)
        self._labels = self._load_labels() if use_labels else np.zeros([len(self._names), 0], np.float32)
        self._xflip = np.zeros(len(self._names), dtype=np.uint8)
        self._order = np.arange(len(self._names))
        if xflip:
            self._order = np.tile(self._order, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    # ---- checks -------------------------------------------------------------------------------

    def _check_images(self, full, resolution, channels):
        shapes, bad, unsupported = {}, [], []
        for name in self._names:
            try:
                data = self.source.read(name)
                width, height, count, mode = probe(data)
                if count is None:
                    unsupported.append(f'{name} ({mode})')
                    continue
                if full:
                    pixels = decode(data)
                    height, width, count = pixels.shape
            except ValueError as error:
                bad.append(f'{name} ({error})')
                continue
            shapes.setdefault((count, height, width), []).append(name)
        where = f'dataset {self.source.path}'
        if bad:
            raise UserError(f'{where}: {len(bad)} empty, corrupt or non-image file(s): {_list(bad)}; remove them')
        if unsupported:
            raise UserError(f'{where}: {len(unsupported)} image(s) in a pixel format training does not read: '
                            f'{_list(unsupported)}; {_FIX}')
        sizes = {(h, w) for _c, h, w in shapes}
        if len(sizes) > 1:
            groups = sorted(shapes.items(), key=lambda item: -len(item[1]))
            described = '; '.join(f'{w}x{h}: {len(names)} ({_list(names, 2)})' for (_c, h, w), names in groups)
            raise UserError(f'{where}: images have different sizes ({described}); {_FIX}')
        counts = {c for c, _h, _w in shapes}
        if len(counts) > 1:
            described = '; '.join(f'{c} channel(s): {len(names)} ({_list(names, 2)})'
                                  for (c, _h, _w), names in sorted(shapes.items()))
            raise UserError(f'{where}: images have different channel counts ({described}); {_FIX}')
        (count, height, width), names = next(iter(shapes.items()))
        if height != width:
            raise UserError(f'{where}: images are {width}x{height}, not square (e.g. {names[0]}); {_FIX}')
        if width < 4 or width & (width - 1):
            raise UserError(f'{where}: images are {width}x{height}; the resolution must be a power of two; {_FIX}')
        if resolution is not None and width != resolution:
            raise UserError(f'{where}: images are {width}x{width} but {resolution}x{resolution} is needed; '
                            f'{_FIX.replace(" R", f" {resolution}")}')
        if channels is not None and count != channels:
            target = {1: 'gray', 3: 'rgb'}.get(channels)
            hint = f'convert with `gda dataset SRC DEST.zip --resolution {width} --channels {target}`' if target \
                else 'use a network with that many channels'
            raise UserError(f'{where}: images have {count} channel(s) but the network makes {channels}; {hint}')
        return [count, height, width]

    def _load_labels(self):
        if LABELS_FILE not in self.source.names:
            return np.zeros([len(self._names), 0], np.float32)
        try:
            labels = json.loads(self.source.read(LABELS_FILE)).get('labels')
        except (ValueError, AttributeError) as error:
            raise UserError(f'dataset {self.source.path}: {LABELS_FILE} is not valid: {error}') from None
        if labels is None:
            return np.zeros([len(self._names), 0], np.float32)
        table = {str(name).replace('\\', '/'): label for name, label in labels}
        missing = [name for name in self._names if name not in table]
        if missing:
            raise UserError(f'dataset {self.source.path}: {LABELS_FILE} has no label for {_list(missing)}')
        array = np.array([table[name] for name in self._names])
        if array.ndim == 1 and np.issubdtype(array.dtype, np.integer):
            if array.min() < 0:
                raise UserError(f'dataset {self.source.path}: class labels must be >= 0')
            return array.astype(np.int64)
        return array.astype(np.float32).reshape(len(self._names), -1)

    # ---- NVIDIA's dataset API -----------------------------------------------------------------

    def __len__(self):
        return len(self._order)

    def __getitem__(self, idx):
        raw = self._order[idx]
        name = self._names[raw]
        try:
            image = decode(self.source.read(name))
        except ValueError as error:
            raise UserError(f'dataset {self.source.path}: {name}: {error}') from None
        if list(image.shape) != [self.image_shape[1], self.image_shape[2], self.image_shape[0]]:
            raise UserError(f'dataset {self.source.path}: {name} decodes to {image.shape}, unlike the other images')
        image = image.transpose(2, 0, 1)
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx):
        label = self._labels[self._order[idx]]
        if self._labels.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    def get_details(self, idx):
        """(file name, x-flipped, raw label) of item `idx`."""
        raw = self._order[idx]
        return self._names[raw], bool(self._xflip[idx]), self._labels[raw].copy()

    @property
    def image_count(self):
        """Images in the dataset; items (len) count each twice with xflip."""
        return len(self._names)

    @property
    def resolution(self):
        return self.image_shape[1]

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def label_shape(self):
        if self._labels.dtype == np.int64:
            return [int(self._labels.max()) + 1]
        return list(self._labels.shape[1:])

    @property
    def label_dim(self):
        return self.label_shape[0]

    @property
    def has_labels(self):
        return self.label_dim != 0

    @property
    def has_onehot_labels(self):
        return self._labels.dtype == np.int64

    def close(self):
        self.source.close()
