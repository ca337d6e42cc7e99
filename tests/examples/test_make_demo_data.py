"""The demo data builder (examples/demo/make_demo_data.py) on synthetic packages: no npm, no network."""

import base64
import hashlib
import io
import json
import os
import pathlib
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest

from gda_testkit.examples import load_demo_script
from stylegan2_ada.dataset import ImageFolderDataset
from stylegan2_ada.errors import UserError


@pytest.fixture(scope='module')
def demo():
    return load_demo_script('make_demo_data')


def entry(name, sort_order, subcategory='face-smiling', category='Smileys & Emotion', google=True,
          twitter=True):
    return dict(short_name=name, sort_order=sort_order, subcategory=subcategory, category=category,
                image=f'{name}.png', unified=f'U{sort_order:04X}', has_img_google=google,
                has_img_twitter=twitter)


def rgba_png(colour, alpha, size=64, under=(0, 0, 0)):
    """A PNG whose centre square is `colour` at `alpha`; everything else is fully transparent over
    `under` (the colour that hides under transparency)."""
    pixels = np.zeros((size, size, 4), np.uint8)
    pixels[..., :3] = under
    quarter = size // 4
    pixels[quarter:-quarter, quarter:-quarter, :3] = colour
    pixels[quarter:-quarter, quarter:-quarter, 3] = alpha
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels, 'RGBA').save(buffer, format='png')
    return buffer.getvalue()


def read_png(data):
    return np.asarray(PIL.Image.open(io.BytesIO(data)))


# -- selection --------------------------------------------------------------------------------------

def test_select_emoji_keeps_what_both_vendors_draw_with_skin_tones_after_their_base(demo):
    wave = entry('wave', 20, subcategory='hand-fingers-open', category='People & Body')
    wave['skin_variations'] = {
        '1F3FC': dict(unified='1F44B-1F3FC', image='wave-1f3fc.png', has_img_google=True, has_img_twitter=True),
        '1F3FB': dict(unified='1F44B-1F3FB', image='wave-1f3fb.png', has_img_google=True, has_img_twitter=True),
        '1F3FD': dict(unified='1F44B-1F3FD', image='wave-1f3fd.png', has_img_google=True, has_img_twitter=False)}
    entries = [entry('wink', 12), wave, entry('grinning', 1),
               entry('dog', 500, subcategory='animal-mammal', category='Animals & Nature'),
               entry('melting_face', 11, twitter=False)]
    chosen = demo.select_emoji(entries, ('google', 'twitter'))
    assert [image['short_name'] for image in chosen] == ['grinning', 'wink', 'wave', 'wave-1f3fb',
                                                         'wave-1f3fc', 'dog']
    variant = chosen[3]
    assert (variant['image'], variant['unified'], variant['skin']) == ('wave-1f3fb.png', '1F44B-1F3FB', '1F3FB')
    assert variant['category'] == 'People & Body' and 'skin_variations' not in chosen[2]


def test_split_shots_follows_the_listed_order_and_holds_out_the_rest(demo):
    faces = [entry(name, index) for index, name in enumerate(['a', 'b', 'c', 'd', 'e'])]
    shots, heldout = demo.split_shots(faces, shots=('d', 'b'))
    assert [face['short_name'] for face in shots] == ['d', 'b']
    assert [face['short_name'] for face in heldout] == ['a', 'c', 'e']
    with pytest.raises(UserError, match='zz'):
        demo.split_shots(faces, shots=('a', 'zz'))


def test_the_real_shot_list_has_ten_distinct_names(demo):
    assert len(demo.SHOTS) == len(set(demo.SHOTS)) == 10


# -- images -----------------------------------------------------------------------------------------

def test_convert_composites_on_white_resizes_and_keeps_order(demo, tmp_path):
    images = [('red.png', rgba_png((255, 0, 0), 255)), ('half_blue.png', rgba_png((0, 0, 255), 128))]
    report = demo.convert(images, tmp_path / 'out.zip', resolution=32)
    assert report.written == 2 and report.channels == 3
    dataset = ImageFolderDataset(tmp_path / 'out.zip')
    assert len(dataset) == 2 and dataset.resolution == 32 and dataset.num_channels == 3
    red, blue = (dataset[i][0].transpose(1, 2, 0).astype(int) for i in range(2))
    # Transparent corners are white, not the black hidden under them.
    assert (red[:6, :6] == 255).all() and (blue[-6:, -6:] == 255).all()
    # The 32x32 opaque centre becomes a 16x16 one (exact 3 px or more inside its edge, past the filter).
    assert (red[12:20, 12:20] == [255, 0, 0]).all()
    # 50% blue over white: (255 * (1 - a), 255 * (1 - a), 255) with a = 128/255.
    assert np.abs(blue[12:20, 12:20] - [127, 127, 255]).max() <= 1


def test_write_named_folder_writes_rgb_pngs_under_their_names(demo, tmp_path):
    images = [('00-a.png', rgba_png((0, 255, 0), 255)), ('01-b.png', rgba_png((9, 9, 9), 255))]
    demo.write_named_folder(images, tmp_path / 'target', resolution=32)
    assert sorted(os.listdir(tmp_path / 'target')) == ['00-a.png', '01-b.png']
    pixels = read_png((tmp_path / 'target' / '00-a.png').read_bytes())
    assert pixels.shape == (32, 32, 3)
    assert (pixels[16, 16] == [0, 255, 0]).all() and (pixels[0, 0] == 255).all()


# -- registry and licences --------------------------------------------------------------------------

def make_tgz(path, members):
    with tarfile.open(path, 'w:gz') as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def integrity(path):
    return 'sha512-' + base64.b64encode(hashlib.sha512(pathlib.Path(path).read_bytes()).digest()).decode()


def test_read_members_names_what_is_missing(demo, tmp_path):
    tgz = make_tgz(tmp_path / 'p.tgz', {'package/a.txt': b'A', 'package/b.txt': b'B'})
    assert demo.read_members(tgz, ['package/b.txt']) == {'package/b.txt': b'B'}
    with pytest.raises(UserError, match='package/c.txt'):
        demo.read_members(tgz, ['package/a.txt', 'package/c.txt'])


def test_fetch_uses_a_verified_cached_tarball_and_rejects_a_wrong_one(demo, tmp_path):
    tgz = make_tgz(tmp_path / 'pkg-1.0.0.tgz', {'package/x': b'x'})
    package = demo.Package('pkg', '1.0.0', integrity(tgz))

    def no_npm(*args, **kwargs):
        raise AssertionError('a verified cached tarball must not be fetched again')

    assert demo.fetch(package, str(tmp_path), run=no_npm) == os.path.join(tmp_path, 'pkg-1.0.0.tgz')
    calls = []

    def fake_npm(command, **kwargs):   # "downloads" something else
        calls.append(command)
        (tmp_path / 'pkg-1.0.0.tgz').write_bytes(b'tampered')

    wrong = demo.Package('pkg', '1.0.0', 'sha512-AAAA')
    with pytest.raises(UserError, match='pinned'):
        demo.fetch(wrong, str(tmp_path), run=fake_npm)
    assert calls and calls[0][:3] == ['npm', 'pack', 'pkg@1.0.0']


README = ('## Licence\n'
          '* Android/Google/Noto images, are available under the [Apache License 2.0](url).\n'
          '* Twitter images are available under the [Creative Commons Attribution 4.0 license](url).\n')


def package_json(artwork):
    return json.dumps(dict(name=artwork.package.name, version=artwork.package.version, license='MIT'))


def test_check_licence_finds_each_vendors_statement(demo):
    line = demo.check_licence(demo.TARGET, README, package_json(demo.TARGET))
    assert 'Twitter images' in line and 'Attribution 4.0' in line
    assert 'Apache License 2.0' in demo.check_licence(demo.SOURCE, README, package_json(demo.SOURCE))


def test_check_licence_refuses_an_unstated_licence_or_another_package(demo):
    without = README.replace('Creative Commons Attribution 4.0', 'a new licence')
    with pytest.raises(UserError, match='CC-BY-4.0'):
        demo.check_licence(demo.TARGET, without, package_json(demo.TARGET))
    with pytest.raises(UserError, match='not emoji-datasource-twitter@16.0.0'):
        demo.check_licence(demo.TARGET, README, package_json(demo.SOURCE))


# -- the whole build on synthetic packages ----------------------------------------------------------

def fake_packages(demo, cache, names):
    """Tarballs shaped like the real ones (emoji.json, README, package.json, 64x64 PNGs)."""
    catalogue = [entry(name, index + 1) for index, name in enumerate(names)]
    catalogue.append(entry('robot_face', 999, twitter=False))   # not drawn by the target vendor
    artworks = {}
    for artwork, colour in ((demo.SOURCE, (250, 200, 0)), (demo.TARGET, (255, 204, 77))):
        members = {'package/README.md': README.encode(),
                   'package/package.json': package_json(artwork).encode(),
                   'package/emoji.json': json.dumps(catalogue).encode()}
        for index, face in enumerate(catalogue):
            members[f'package/img/{artwork.vendor}/64/{face["image"]}'] = rgba_png(
                (colour[0], colour[1], index), 255)
        path = make_tgz(os.path.join(cache, artwork.package.tarball), members)
        artworks[artwork.vendor] = demo.Artwork(demo.Package(artwork.package.name, artwork.package.version,
                                                             integrity(path)),
                                                artwork.vendor, artwork.licence, artwork.statement)
    licences = {f'package/licenses/{spdx}.json': json.dumps(dict(licenseText=f'{spdx} text\n')).encode()
                for spdx in ('CC-BY-4.0', 'Apache-2.0')}
    spdx = make_tgz(os.path.join(cache, demo.LICENCE_TEXTS.tarball), licences)
    return artworks, demo.Package(demo.LICENCE_TEXTS.name, demo.LICENCE_TEXTS.version, integrity(spdx))


def test_build_writes_target_heldout_source_licences_and_provenance(demo, tmp_path, monkeypatch):
    cache, ship = (str(tmp_path / name) for name in ('cache', 'ship'))
    os.makedirs(cache)
    names = list(demo.SHOTS) + ['held_a', 'held_b', 'held_c']
    artworks, spdx = fake_packages(demo, cache, names)
    monkeypatch.setattr(demo, 'SOURCE', artworks['google'])
    monkeypatch.setattr(demo, 'TARGET', artworks['twitter'])
    monkeypatch.setattr(demo, 'LICENCE_TEXTS', spdx)

    def no_npm(*args, **kwargs):
        raise AssertionError('npm must not run when the tarballs are cached')

    record = demo.build(cache, ship, run=no_npm, log=lambda line: None)

    target = sorted(os.listdir(os.path.join(ship, demo.TARGET_DIR)))
    assert target == [f'{index:02d}-{name}.png' for index, name in enumerate(demo.SHOTS)]
    assert len(ImageFolderDataset(os.path.join(ship, demo.HELDOUT_ZIP))) == 3
    source = ImageFolderDataset(os.path.join(ship, demo.SOURCE_ZIP))
    assert len(source) == 13 and source.resolution == 32
    roles = [image['role'] for image in record['images']]
    assert roles.count('source') == 13 and roles.count('target') == 10 and roles.count('heldout') == 3
    heldout = [image['short_name'] for image in record['images'] if image['role'] == 'heldout']
    assert heldout == ['held_a', 'held_b', 'held_c']      # robot_face (no Twitter image) left out
    for image in record['images']:
        assert hashlib.sha256(demo.output_bytes(ship, image['output'])).hexdigest() == image['output_sha256']
    tarball = pathlib.Path(cache, artworks['twitter'].package.tarball).read_bytes()
    twitter = next(p for p in record['packages'] if p['name'] == 'emoji-datasource-twitter')
    assert twitter['sha256'] == hashlib.sha256(tarball).hexdigest()
    assert twitter['artwork_licence']['spdx'] == 'CC-BY-4.0'
    assert json.loads(pathlib.Path(ship, 'provenance.json').read_text()) == record
    assert pathlib.Path(ship, 'LICENSE-CC-BY-4.0.txt').read_text() == 'CC-BY-4.0 text\n'
    attribution = pathlib.Path(ship, 'ATTRIBUTION.md').read_text()
    assert 'Twitter, Inc and other contributors' in attribution and 'CC-BY 4.0' in attribution
