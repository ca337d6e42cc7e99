"""Turn a folder or zip of arbitrary images into a training dataset, and say what was changed.

Output: NVIDIA's layout (00000/img00000000.png ... plus dataset.json with labels or null) as a zip
(written atomically) or a new folder. Every image is made square (center crop or padding), resized
to the resolution, and given one channel layout for the whole dataset. Transparency is composited
onto an explicit background colour (white by default): converting RGBA straight to RGB keeps
whatever colour hides under transparent pixels, typically black corners. Files that cannot be read
are skipped and listed; every change is counted in the report.
"""

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import zipfile

import PIL.Image
import PIL.ImageColor
import PIL.ImageOps

from .dataset import LABELS_FILE, FileSource, image_extensions
from .errors import UserError, reporting_disk_full

FILTERS = {
    'lanczos': PIL.Image.Resampling.LANCZOS,
    'bicubic': PIL.Image.Resampling.BICUBIC,
    'bilinear': PIL.Image.Resampling.BILINEAR,
    'box': PIL.Image.Resampling.BOX,
    'hamming': PIL.Image.Resampling.HAMMING,
    'nearest': PIL.Image.Resampling.NEAREST,
}
SQUARE_MODES = ('crop', 'pad')
CHANNEL_MODES = ('auto', 'rgb', 'gray')
_EXIF_ORIENTATION = 0x0112
_GRAY_MODES = {'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F'}


@dataclasses.dataclass
class Report:
    """What a conversion wrote and changed: counts per kind of change, each with example files."""

    dest: str
    resolution: int
    channels: int = 3
    written: int = 0
    total: int = 0          # images to convert
    bytes_written: int = 0
    changes: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)

    def note(self, change, name):
        self.changes.setdefault(change, []).append(name)

    def expected_bytes(self):
        """The whole dataset's size, extrapolated from what was written so far."""
        return self.bytes_written * self.total // max(self.written, 1)

    def lines(self):
        layout = {1: 'grayscale', 3: 'RGB'}[self.channels]
        lines = [f'Wrote {self.written} images ({self.resolution}x{self.resolution} {layout}) to {self.dest}']
        for change, names in self.changes.items():
            lines.append(f'  {change}: {len(names)} (e.g. {names[0]})')
        if not self.changes:
            lines.append('  no image needed changes')
        if self.skipped:
            shown = ', '.join(f'{name} ({reason})' for name, reason in self.skipped[:5])
            more = f' and {len(self.skipped) - 5} more' if len(self.skipped) > 5 else ''
            lines.append(f'  skipped {len(self.skipped)} file(s): {shown}{more}')
        return lines


def parse_color(text):
    """An RGB tuple for a colour name or #hex code."""
    try:
        return PIL.ImageColor.getrgb(text)[:3]
    except ValueError:
        raise UserError(f'unknown colour {text!r}; use a name such as white or a code such as #808080') from None


def _open(data):
    image = PIL.Image.open(io.BytesIO(data))
    image.load()  # decode now so corrupt files fail here, not later
    return image


def _to_8bit(image, name, report):
    """Bring 16-bit, float and exotic modes to L/LA/RGB/RGBA; palettes to RGB(A)."""
    if image.mode == 'P':
        report.note('palette expanded', name)
        return image.convert('RGBA' if 'transparency' in image.info else 'RGB')
    if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
        report.note(f'{image.mode} (16-bit/float) scaled to 8-bit', name)
        scale = 255 if image.mode == 'F' else 1 / 256  # float images are taken to span [0, 1]
        source = image if image.mode == 'F' else image.convert('I')
        return source.point(lambda value: value * scale).convert('L')
    if image.mode == '1':
        return image.convert('L')
    if image.mode == 'PA':
        return image.convert('RGBA')
    if image.mode not in ('L', 'LA', 'RGB', 'RGBA'):
        report.note(f'{image.mode} converted to RGB', name)
        return image.convert('RGB')
    return image


def _with_alpha(image):
    """L or RGB with a tRNS transparent colour as LA/RGBA, so that colour is composited too."""
    if image.mode in ('L', 'RGB') and 'transparency' in image.info:
        return image.convert(image.mode + 'A')
    return image


def _flatten_alpha(image, background, name, report):
    """Composite transparency onto the background in the dataset's layout: a gray+alpha image in
    an RGB dataset shows the background colour itself, not its gray."""
    image = _with_alpha(image)
    if image.mode not in ('LA', 'RGBA'):
        return image
    if image.getextrema()[-1][0] == 255:
        return image.convert(image.mode[:-1])  # fully opaque: the alpha channel carries nothing
    report.note(f'transparency composited onto {background}', name)
    rgba = image.convert('RGBA')
    canvas = PIL.Image.new('RGBA', rgba.size, parse_color(background) + (255,))
    return PIL.Image.alpha_composite(canvas, rgba).convert('L' if report.channels == 1 else 'RGB')


def _square(image, mode, background, name, report):
    width, height = image.size
    if width == height:
        return image
    side = min(width, height) if mode == 'crop' else max(width, height)
    if mode == 'crop':
        report.note('center-cropped to square', name)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    report.note(f'padded to square with {background}', name)
    fill = parse_color(background)
    canvas = PIL.Image.new(image.mode, (side, side), fill if image.mode == 'RGB' else _gray(fill))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _gray(rgb):
    return round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _layout(source, names, background):
    """1 if every image is grayscale, else 3 (what --channels auto picks); a transparent gray
    image counts as colour when the background it is composited onto is a colour."""
    gray_background = len(set(parse_color(background))) == 1
    for name in names:
        try:
            with PIL.Image.open(io.BytesIO(source.read(name))) as image:
                gray = image.mode in _GRAY_MODES or (image.mode == 'P' and _palette_is_gray(image))
                transparent = image.mode in ('LA', 'La', 'PA') or 'transparency' in image.info
                gray = gray and (gray_background or not transparent)
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError):
            continue  # reported as skipped during conversion
        if not gray:
            return 3
    return 1


def _palette_is_gray(image):
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def _source_labels(source):
    if LABELS_FILE not in source.names:
        return None
    try:
        labels = json.loads(source.read(LABELS_FILE)).get('labels')
    except (ValueError, AttributeError) as error:
        raise UserError(f'{source.path}: {LABELS_FILE} is not valid: {error}') from None
    return None if labels is None else {str(name).replace('\\', '/'): label for name, label in labels}


def check_destination(dest, source, overwrite):
    """Refuse a destination that is the source, a non-empty folder, or (without overwrite) an
    existing zip: a conversion must never silently replace a dataset."""
    if os.path.abspath(dest) == os.path.abspath(os.fspath(source)):
        raise UserError(f'{dest} is the source itself; write the dataset to a new name')
    if dest.lower().endswith('.zip'):
        if os.path.isdir(dest):
            raise UserError(f'{dest} is a folder; give a zip file name or a new folder')
        if os.path.exists(dest) and not overwrite:
            raise UserError(f'{dest} already exists; pass --overwrite to replace it, or choose a '
                            f'new name')
    elif os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise UserError(f'{dest} already exists and is not an empty folder; choose a new name or a .zip')


def convert_dataset(source, dest, resolution, square='crop', resize_filter='lanczos', background='white',
                    channels='auto', max_images=None, overwrite=False):
    """Write a training dataset from `source` (folder or zip) to `dest` (.zip or new folder); a Report.

    The output appears whole or not at all: an existing DEST.zip is replaced only with
    overwrite=True, and a failed run leaves neither a partial dataset nor new empty folders."""
    if resolution < 4 or resolution & (resolution - 1):
        raise UserError(f'--resolution must be a power of two >= 4, not {resolution}')
    if square not in SQUARE_MODES or channels not in CHANNEL_MODES or resize_filter not in FILTERS:
        raise UserError(f'square must be one of {SQUARE_MODES}, channels one of {CHANNEL_MODES}, '
                        f'filter one of {tuple(FILTERS)}')
    parse_color(background)
    dest = os.fspath(dest)
    to_zip = dest.lower().endswith('.zip')
    check_destination(dest, source, overwrite)
    source = FileSource(source)
    extensions = image_extensions()
    report = Report(dest=dest, resolution=resolution)
    names = []
    for name in source.names:
        if os.path.splitext(name)[1].lower() in extensions:
            names.append(name)
        elif name != LABELS_FILE:
            report.skipped.append((name, 'not an image'))
    if max_images is not None:
        names = names[:max_images]
    report.total = len(names)
    report.channels = {'rgb': 3, 'gray': 1}.get(channels) or _layout(source, names, background)
    labels = _source_labels(source)
    unlabelled = [name for name in names if labels is not None and name not in labels]
    if unlabelled:
        raise UserError(f'{source.path}: {LABELS_FILE} has no label for {", ".join(unlabelled[:5])}')
    files = _convert_all(source, names, labels, report, square, resize_filter, background)
    with _removing_new_folders(dest):
        (_write_zip if to_zip else _write_folder)(dest, files, report)
    return report


def _convert_all(source, names, labels, report, square, resize_filter, background):
    """Yield (archive name, bytes) for every converted image and finally dataset.json."""
    out_labels = []

    def generate():
        for name in names:
            data = source.read(name)
            if not data:
                report.skipped.append((name, 'empty'))
                continue
            try:
                image = _open(data)
            except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                report.skipped.append((name, f'corrupt: {error}'))
                continue
            image = _prepare(image, name, report, square, resize_filter, background)
            index = report.written
            archive_name = f'{index // 1000:05d}/img{index:08d}.png'
            buffer = io.BytesIO()
            image.save(buffer, format='png', compress_level=0 if image.width > 512 else 6)
            report.written += 1
            report.bytes_written += buffer.tell()
            if labels is not None:
                out_labels.append([archive_name, labels[name]])
            yield archive_name, buffer.getvalue()
        if report.written == 0:  # raised before anything is written under the destination name
            raise UserError(f'{source.path}: no readable images to convert'
                            + (f' (skipped {len(report.skipped)} file(s))' if report.skipped else ''))
        meta = {'labels': out_labels if labels is not None else None}
        yield LABELS_FILE, json.dumps(meta).encode('utf-8')

    return generate()


def _prepare(image, name, report, square, resize_filter, background):
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        report.note('rotated/flipped by its EXIF orientation', name)
        image = PIL.ImageOps.exif_transpose(image)
    image = _to_8bit(image, name, report)
    image = _flatten_alpha(image, background, name, report)
    if report.channels == 3 and image.mode == 'L':
        report.note('grayscale -> RGB', name)
        image = image.convert('RGB')
    elif report.channels == 1 and image.mode == 'RGB':
        report.note('RGB -> grayscale', name)
        image = image.convert('L')
    image = _square(image, square, background, name, report)
    if image.width != report.resolution:
        direction = 'upscaled' if image.width < report.resolution else 'downscaled'
        report.note(f'{direction} to {report.resolution}x{report.resolution} ({resize_filter})', name)
        image = image.resize((report.resolution, report.resolution), FILTERS[resize_filter])
    return image


@contextlib.contextmanager
def _removing_new_folders(dest):
    """On failure, remove the folders above `dest` that this conversion created (empty ones)."""
    parent = os.path.dirname(os.path.abspath(dest))
    missing = []
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        yield
    except BaseException:
        for folder in missing:   # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _write_zip(dest, files, report):
    from .checkpoint.atomic import atomic_write   # the checkpoint package loads torch: not at import
    """The archive goes to a temporary file renamed into place once complete."""
    with atomic_write(dest, needs=report.expected_bytes) as file:
        with zipfile.ZipFile(file, 'w', compression=zipfile.ZIP_STORED) as archive:
            for name, data in files:
                archive.writestr(name, data)


def _write_folder(dest, files, report):
    """The folder is built under a temporary name beside `dest` and renamed into place once
    complete; an empty `dest` folder given by the user is replaced."""
    from .checkpoint.atomic import current_umask   # the checkpoint package loads torch
    parent = os.path.dirname(os.path.abspath(dest))
    with reporting_disk_full(dest, report.expected_bytes):
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(dest)}.', suffix='.tmp')
        try:
            for name, data in files:
                path = os.path.join(staging, *name.split('/'))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'wb') as file:
                    file.write(data)
            if os.path.isdir(dest):
                os.rmdir(dest)   # empty (check_destination): the user's chosen place
            os.chmod(staging, 0o777 & ~current_umask())   # mkdtemp makes 0700
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
