"""`gda dataset` conversion: square, resize, channels, transparency, labels, and its report."""

import json
import zipfile

import numpy as np
import PIL.Image
import pytest

from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.dataset_tool import convert_dataset
from stylegan2_ada.errors import UserError


def _save(path, image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _transparent_disc(size=16):
    """Opaque red disc, fully transparent black corners (RGB under alpha is black)."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 2 - 1) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (255, 0, 0, 255)
    return PIL.Image.fromarray(rgba)


@pytest.fixture
def messy(tmp_path):
    src = tmp_path / 'src'
    _save(src / 'wide.png', PIL.Image.new('RGB', (48, 32), (0, 128, 255)))
    _save(src / 'disc.png', _transparent_disc())
    palette = PIL.Image.new('P', (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info['transparency'] = 0
    palette.paste(0, (0, 0, 8, 16))  # left half transparent
    _save(src / 'palette.png', palette, transparency=0)
    _save(src / 'gray.jpg', PIL.Image.new('L', (32, 32), 100), quality=95)
    (src / 'notes.txt').write_text('not an image')
    (src / 'empty.png').write_bytes(b'')
    return src


def test_messy_folder_becomes_a_clean_dataset(messy, tmp_path):
    report = convert_dataset(messy, tmp_path / 'out.zip', 16)
    assert report.written == 4 and report.channels == 3
    changes = {key: sorted(names) for key, names in report.changes.items()}
    assert changes['center-cropped to square'] == ['wide.png']
    assert changes['transparency composited onto white'] == ['disc.png', 'palette.png']
    assert changes['palette expanded'] == ['palette.png']
    assert changes['grayscale -> RGB'] == ['gray.jpg']
    assert changes['downscaled to 16x16 (lanczos)'] == ['gray.jpg', 'wide.png']
    assert dict(report.skipped) == {'empty.png': 'empty', 'notes.txt': 'not an image'}
    text = '\n'.join(report.lines())
    assert 'Wrote 4 images (16x16 RGB)' in text and 'skipped 2 file(s)' in text

    dataset = ImageFolderDataset(tmp_path / 'out.zip', channels=3, resolution=16)
    names = {dataset.get_details(i)[0] for i in range(len(dataset))}
    assert names == {f'00000/img{i:08d}.png' for i in range(4)}
    disc = dataset[[n for n in range(4) if dataset.get_details(n)[0].endswith('0.png')][0]][0]
    assert disc[:, 0, 0].tolist() == [255, 255, 255]  # white corners, not black
    assert disc[:, 8, 8].tolist() == [255, 0, 0]
    with zipfile.ZipFile(tmp_path / 'out.zip') as archive:
        assert json.loads(archive.read('dataset.json')) == {'labels': None}


def test_pad_uses_the_background_colour(tmp_path):
    _save(tmp_path / 'src/tall.png', PIL.Image.new('RGB', (8, 16), (0, 255, 0)))
    report = convert_dataset(tmp_path / 'src', tmp_path / 'out', 16, square='pad', background='#0000ff',
                             resize_filter='nearest')
    assert list(report.changes) == ['padded to square with #0000ff']
    image = np.asarray(PIL.Image.open(tmp_path / 'out/00000/img00000000.png'))
    assert image[8, 0].tolist() == [0, 0, 255] and image[8, 8].tolist() == [0, 255, 0]


def test_channels_auto_gray_and_forced(tmp_path):
    _save(tmp_path / 'gray/a.png', PIL.Image.new('L', (16, 16), 50))
    _save(tmp_path / 'gray/b.png', PIL.Image.new('LA', (16, 16), (200, 255)))
    _save(tmp_path / 'gray/c.png', PIL.Image.new('LA', (16, 16), (0, 0)))
    report = convert_dataset(tmp_path / 'gray', tmp_path / 'g.zip', 16)
    assert report.channels == 1 and list(report.changes) == ['transparency composited onto white']
    dataset = ImageFolderDataset(tmp_path / 'g.zip')
    assert dataset.num_channels == 1 and [int(dataset[i][0].max()) for i in range(3)] == [50, 200, 255]
    _save(tmp_path / 'rgb/c.png', PIL.Image.new('RGB', (16, 16), (255, 0, 0)))
    report = convert_dataset(tmp_path / 'rgb', tmp_path / 'c.zip', 16, channels='gray')
    assert report.changes['RGB -> grayscale'] == ['c.png']
    assert ImageFolderDataset(tmp_path / 'c.zip')[0][0][0, 0, 0] == 76  # ITU-R 601 luma of red


def test_filter_option_is_used(tmp_path):
    checker = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((2, 2), np.uint8))
    _save(tmp_path / 'src/c.png', PIL.Image.fromarray(checker))
    convert_dataset(tmp_path / 'src', tmp_path / 'n.zip', 8, resize_filter='nearest')
    convert_dataset(tmp_path / 'src', tmp_path / 'l.zip', 8, resize_filter='lanczos')
    nearest = ImageFolderDataset(tmp_path / 'n.zip')[0][0]
    lanczos = ImageFolderDataset(tmp_path / 'l.zip')[0][0]
    assert set(np.unique(nearest)) == {0, 255} and len(np.unique(lanczos)) > 2


def test_sixteen_bit_images_are_scaled(tmp_path):
    _save(tmp_path / 'src/deep.png', PIL.Image.fromarray(np.full((16, 16), 51400, np.uint16)))
    report = convert_dataset(tmp_path / 'src', tmp_path / 'd.zip', 16)
    assert any('16-bit' in change for change in report.changes)
    assert ImageFolderDataset(tmp_path / 'd.zip')[0][0][0, 0, 0] == 200


def test_exif_orientation_is_applied(tmp_path):
    image = PIL.Image.new('RGB', (16, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 8, 8))  # left half white
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    _save(tmp_path / 'src/photo.jpg', image, exif=exif, quality=100)
    report = convert_dataset(tmp_path / 'src', tmp_path / 'out', 8, resize_filter='nearest')
    assert report.changes['rotated/flipped by its EXIF orientation'] == ['photo.jpg']
    assert 'center-cropped to square' in report.changes
    pixels = np.asarray(PIL.Image.open(tmp_path / 'out/00000/img00000000.png'))
    assert pixels[1, 4].min() > 200 and pixels[6, 4].max() < 50  # white half now on top


def test_labels_are_carried_over(tmp_path):
    for i in range(3):
        _save(tmp_path / f'src/{i}.png', PIL.Image.new('RGB', (8, 8), (i, i, i)))
    (tmp_path / 'src/dataset.json').write_text(json.dumps({'labels': [[f'{i}.png', i] for i in range(3)]}))
    convert_dataset(tmp_path / 'src', tmp_path / 'l.zip', 8)
    dataset = ImageFolderDataset(tmp_path / 'l.zip', use_labels=True)
    assert [int(np.argmax(dataset[i][1])) for i in range(3)] == [0, 1, 2]
    assert [int(dataset[i][0][0, 0, 0]) for i in range(3)] == [0, 1, 2]


def test_errors_leave_nothing_behind(tmp_path):
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src/readme.txt').write_text('x')
    with pytest.raises(UserError, match=r'no readable images to convert \(skipped 1 file\(s\)\)'):
        convert_dataset(tmp_path / 'src', tmp_path / 'out.zip', 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['src']
    with pytest.raises(UserError, match='power of two'):
        convert_dataset(tmp_path / 'src', tmp_path / 'out.zip', 24)
    with pytest.raises(UserError, match='unknown colour'):
        convert_dataset(tmp_path / 'src', tmp_path / 'out.zip', 16, background='blurple')
    with pytest.raises(UserError, match='is the source itself'):
        convert_dataset(tmp_path / 'src', tmp_path / 'src', 16)
    with pytest.raises(UserError, match='already exists and is not an empty folder'):
        convert_dataset(tmp_path / 'src', tmp_path, 16)


@pytest.mark.parametrize('mode', ['RGBA', 'LA', 'P', 'L-tRNS', 'RGB-tRNS'])
def test_every_transparent_pixel_becomes_the_background_whatever_the_png_mode(tmp_path, mode):
    """Left half transparent, right half opaque gray 200, composited onto #102030 in RGB."""
    gray = np.full((16, 16), 200, np.uint8)
    alpha = np.full((16, 16), 255, np.uint8)
    alpha[:, :8] = 0
    extra = {}
    if mode in ('RGBA', 'LA'):
        image = PIL.Image.fromarray(np.dstack([gray] * (3 if mode == 'RGBA' else 1) + [alpha]), mode)
    elif mode == 'P':
        image = PIL.Image.fromarray(np.where(alpha == 0, 0, 1).astype(np.uint8), 'P')
        image.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
        extra = dict(transparency=0)
    else:   # a tRNS colour: every pixel of gray 0 is transparent
        pixels = np.where(alpha == 0, 0, 200).astype(np.uint8)
        image = PIL.Image.fromarray(pixels if mode == 'L-tRNS' else np.dstack([pixels] * 3))
        extra = dict(transparency=0 if mode == 'L-tRNS' else (0, 0, 0))
    _save(tmp_path / 'src/a.png', image, **extra)
    convert_dataset(tmp_path / 'src', tmp_path / 'out.zip', 16, background='#102030',
                    channels='rgb')
    pixels = ImageFolderDataset(tmp_path / 'out.zip')[0][0].transpose(1, 2, 0)
    assert (pixels[:, :8] == (16, 32, 48)).all() and (pixels[:, 8:] == 200).all()


def test_transparent_gray_images_make_an_rgb_dataset_on_a_colour_background(tmp_path):
    alpha = np.zeros((16, 16), np.uint8)
    _save(tmp_path / 'src/a.png', PIL.Image.fromarray(np.dstack([alpha, alpha]), 'LA'))
    assert convert_dataset(tmp_path / 'src', tmp_path / 'c.zip', 16, background='#102030').channels == 3
    assert convert_dataset(tmp_path / 'src', tmp_path / 'g.zip', 16, background='gray').channels == 1


def test_an_existing_zip_is_replaced_only_when_asked(tmp_path):
    for i in range(3):
        _save(tmp_path / f'src/{i}.png', PIL.Image.new('RGB', (16, 16), (i, i, i)))
    _save(tmp_path / 'one/0.png', PIL.Image.new('RGB', (16, 16), (9, 9, 9)))
    convert_dataset(tmp_path / 'src', tmp_path / 'out.zip', 16)
    with pytest.raises(UserError, match=r'out\.zip already exists; pass --overwrite to replace it'):
        convert_dataset(tmp_path / 'one', tmp_path / 'out.zip', 16)
    assert len(ImageFolderDataset(tmp_path / 'out.zip')) == 3
    convert_dataset(tmp_path / 'one', tmp_path / 'out.zip', 16, overwrite=True)
    assert len(ImageFolderDataset(tmp_path / 'out.zip')) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one', 'out.zip', 'src']


@pytest.mark.parametrize('dest', ['new/deeper/out.zip', 'new/deeper/folder'])
def test_a_failure_midway_leaves_no_partial_dataset_and_no_new_folders(tmp_path, dest):
    """The third image cannot be read (a corrupt member): no half dataset, no empty folders."""
    for i in range(4):
        _save(tmp_path / f'src/{i}.png', PIL.Image.new('RGB', (16, 16), (i, i, i)))
    with zipfile.ZipFile(tmp_path / 'src.zip', 'w') as archive:
        for i in range(4):
            archive.write(tmp_path / f'src/{i}.png', f'{i}.png')
    data = bytearray((tmp_path / 'src.zip').read_bytes())
    with zipfile.ZipFile(tmp_path / 'src.zip') as archive:
        offset = archive.getinfo('2.png').header_offset + 30 + len('2.png')
    data[offset + 40] ^= 0xFF
    (tmp_path / 'src.zip').write_bytes(bytes(data))
    with pytest.raises(UserError, match=r'member 2\.png is corrupt'):
        convert_dataset(tmp_path / 'src.zip', tmp_path / dest, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['src', 'src.zip']


def test_a_folder_dataset_appears_whole(tmp_path):
    for i in range(3):
        _save(tmp_path / f'src/{i}.png', PIL.Image.new('RGB', (16, 16), (i, i, i)))
    (tmp_path / 'empty').mkdir()
    convert_dataset(tmp_path / 'src', tmp_path / 'empty', 16)
    assert len(ImageFolderDataset(tmp_path / 'empty')) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'src']
