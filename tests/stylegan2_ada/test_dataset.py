"""Training datasets: NVIDIA's layout and item API; unusable data refused with the files named."""

import io
import json
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest

from stylegan2_ada.dataset import ImageFolderDataset, decode
from stylegan2_ada.errors import UserError


def _pixels(seed, size=16, channels=3):
    shape = (size, size) if channels == 1 else (size, size, channels)
    return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


def _save(path, array, fmt='png', **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path, format=fmt, **kwargs)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / 'faces'
    for i in range(5):
        _save(root / f'sub/img{i}.png', _pixels(i))
    return root


def _zip(folder, dest):
    with zipfile.ZipFile(dest, 'w') as archive:
        for path in sorted(folder.rglob('*')):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return dest


def test_items_match_the_files(folder):
    dataset = ImageFolderDataset(folder)
    assert len(dataset) == 5 and dataset.resolution == 16 and dataset.num_channels == 3
    assert dataset.name == 'faces' and not dataset.has_labels and dataset.label_dim == 0
    image, label = dataset[2]
    assert image.dtype == np.uint8 and image.shape == (3, 16, 16) and label.shape == (0,)
    assert np.array_equal(image, _pixels(2).transpose(2, 0, 1))


def test_zip_gives_the_same_items_and_pickles(folder, tmp_path):
    archive = ImageFolderDataset(_zip(folder, tmp_path / 'faces.zip'))
    plain = ImageFolderDataset(folder)
    assert all(np.array_equal(archive[i][0], plain[i][0]) for i in range(5))
    clone = pickle.loads(pickle.dumps(archive))  # DataLoader workers get their own zip handle
    assert np.array_equal(clone[4][0], plain[4][0])


def test_xflip_and_max_size(folder):
    flipped = ImageFolderDataset(folder, xflip=True)
    assert len(flipped) == 10
    assert np.array_equal(flipped[7][0], flipped[2][0][:, :, ::-1])
    subset = ImageFolderDataset(folder, max_size=3, random_seed=1)
    again = ImageFolderDataset(folder, max_size=3, random_seed=1)
    assert len(subset) == 3
    assert [subset.get_details(i)[0] for i in range(3)] == [again.get_details(i)[0] for i in range(3)]


def test_labels_from_dataset_json(folder):
    labels = [[f'sub/img{i}.png', i % 3] for i in range(5)]
    (folder / 'dataset.json').write_text(json.dumps({'labels': labels}))
    dataset = ImageFolderDataset(folder, use_labels=True)
    assert dataset.has_onehot_labels and dataset.label_shape == [3]
    assert np.array_equal(dataset.get_label(4), np.array([0, 1, 0], np.float32))
    assert ImageFolderDataset(folder).label_dim == 0  # labels unused unless asked for
    (folder / 'dataset.json').write_text(json.dumps({'labels': [[n, [0.5, i]] for n, i in labels]}))
    vectors = ImageFolderDataset(folder, use_labels=True)
    assert vectors.label_shape == [2] and np.allclose(vectors[3][1], [0.5, 0])


def test_missing_label_is_named(folder):
    (folder / 'dataset.json').write_text(json.dumps({'labels': [['sub/img0.png', 1]]}))
    with pytest.raises(UserError, match=r'dataset.json has no label for sub/img1\.png'):
        ImageFolderDataset(folder, use_labels=True)


def test_jpeg_webp_and_grayscale(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    rgb = np.stack([smooth, smooth.T, smooth], axis=2)
    _save(tmp_path / 'a/x.jpg', rgb, 'jpeg', quality=95)
    _save(tmp_path / 'a/y.webp', rgb, 'webp', lossless=True)
    dataset = ImageFolderDataset(tmp_path / 'a')
    assert np.abs(dataset[0][0].astype(int) - rgb.transpose(2, 0, 1)).max() < 12
    assert np.array_equal(dataset[1][0], rgb.transpose(2, 0, 1))
    _save(tmp_path / 'g/z.png', smooth)
    assert ImageFolderDataset(tmp_path / 'g')[0][0].shape == (1, 16, 16)


def test_png_fast_path_matches_pillow():
    for channels in (1, 2, 3, 4):
        array = _pixels(channels, channels=channels)
        buffer = io.BytesIO()
        PIL.Image.fromarray(array).save(buffer, format='png')
        decoded = decode(buffer.getvalue())
        assert decoded.shape == (16, 16, channels)
        assert np.array_equal(decoded.reshape(array.shape), array)


def _expect(path, pattern, **kwargs):
    with pytest.raises(UserError, match=pattern) as error:
        ImageFolderDataset(path, **kwargs)
    assert '\n' not in str(error.value)


def test_empty_corrupt_and_non_image_files_are_named(folder):
    (folder / 'sub/empty.png').write_bytes(b'')
    (folder / 'sub/garbage.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    _expect(folder, r'2 empty, corrupt or non-image file\(s\): sub/empty.png \(empty file\), sub/garbage.png')
    (folder / 'sub/empty.png').unlink()
    (folder / 'sub/garbage.png').unlink()
    (folder / 'notes.txt').write_text('hello')
    (folder / '.DS_Store').write_bytes(b'\0\1')  # hidden files are ignored
    _expect(folder, r'file\(s\) that are not images: notes.txt; remove them')


def test_truncated_image_is_caught_up_front_or_on_use(folder):
    data = (folder / 'sub/img3.png').read_bytes()
    (folder / 'sub/img3.png').write_bytes(data[:len(data) // 2])
    _expect(folder, r'corrupt .*sub/img3.png')
    lazy = ImageFolderDataset(folder, check='header')  # large datasets: headers only up front
    with pytest.raises(UserError, match=r'sub/img3.png: corrupt image'):
        lazy[3]


def test_geometry_problems_are_named(tmp_path):
    _save(tmp_path / 'mixed/a.png', _pixels(0, 16))
    _save(tmp_path / 'mixed/b.png', _pixels(1, 32))
    _expect(tmp_path / 'mixed', r'different sizes \(16x16: 1 \(a.png\); 32x32: 1 \(b.png\)\); fix them with `gda dataset')
    _save(tmp_path / 'wide/a.png', np.zeros((16, 32, 3), np.uint8))
    _expect(tmp_path / 'wide', r'images are 32x16, not square \(e.g. a.png\)')
    _save(tmp_path / 'odd/a.png', _pixels(0, 12))
    _expect(tmp_path / 'odd', r'12x12; the resolution must be a power of two')


def test_channel_problems_are_named(tmp_path):
    _save(tmp_path / 'gray/a.png', _pixels(0, channels=1))
    _expect(tmp_path / 'gray', r'1 channel\(s\) but the network makes 3; convert with `gda dataset SRC DEST.zip '
                               r'--resolution 16 --channels rgb`', channels=3)
    _save(tmp_path / 'gray/b.png', _pixels(1, channels=3))
    _expect(tmp_path / 'gray', r'different channel counts \(1 channel\(s\): 1 \(a.png\); 3 channel\(s\): 1 \(b.png\)\)')
    _save(tmp_path / 'deep/a.png', np.zeros((16, 16), np.uint16))
    _expect(tmp_path / 'deep', r'pixel format training does not read: a.png \(I;16')


def test_resolution_and_empty_dataset(folder, tmp_path):
    _expect(folder, r'images are 16x16 but 32x32 is needed; .*--resolution 32', resolution=32)
    (tmp_path / 'none').mkdir()
    _expect(tmp_path / 'none', 'holds no images')
    _expect(tmp_path / 'absent', 'does not exist')


def damage_zip(path, how, member='sub/img2.png'):
    """A zip as a bad download leaves it: 'crc' flips a byte of `member`'s data, 'encrypted'
    marks every member as password-protected, 'truncated' cuts the file in half."""
    data = bytearray(path.read_bytes())
    if how == 'crc':
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        name_length, extra_length = np.frombuffer(bytes(data[info.header_offset + 26:
                                                             info.header_offset + 30]), '<u2')
        data[info.header_offset + 30 + name_length + extra_length + 40] ^= 0xFF
    elif how == 'encrypted':
        start = 0
        while (start := data.find(b'PK\x01\x02', start)) >= 0:   # central directory entries
            data[start + 8] |= 0x01
            start += 4
    else:
        data = data[:len(data) // 2]
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize('how,message', [
    ('crc', r'faces\.zip: member sub/img2\.png is corrupt \(its CRC check fails\); the archive '
            r'is damaged'),
    ('encrypted', r'faces\.zip: member sub/img0\.png is encrypted; gda reads no '
                  r'password-protected archives'),
    ('truncated', r'faces\.zip is a damaged zip archive \(truncated'),
])
def test_a_damaged_archive_names_itself_and_the_member(folder, tmp_path, how, message):
    archive = damage_zip(_zip(folder, tmp_path / 'faces.zip'), how)
    with pytest.raises(UserError, match=message):
        ImageFolderDataset(archive)


def test_zip64_archives_read_like_any_other(folder, tmp_path):
    path = tmp_path / 'faces64.zip'
    with zipfile.ZipFile(path, 'w') as archive:
        for image in sorted(folder.rglob('*.png')):
            with archive.open(image.relative_to(folder).as_posix(), 'w', force_zip64=True) as out:
                out.write(image.read_bytes())
    plain = ImageFolderDataset(folder)
    wide = ImageFolderDataset(path)
    assert len(wide) == 5 and all(np.array_equal(wide[i][0], plain[i][0]) for i in range(5))
