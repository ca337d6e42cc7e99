"""The bundled demo data (gda_core/demo_data): what ships, its sizes, licences and provenance."""

import fnmatch
import hashlib
import json
import os
import pathlib
import re

import numpy as np
import PIL.Image

from gda_core import demo_data
from stylegan2_ada.dataset import ImageFolderDataset

ROOT = pathlib.Path(__file__).resolve().parents[2]


def provenance():
    return json.loads(pathlib.Path(demo_data.PROVENANCE).read_text())


def images(role):
    return [image for image in provenance()['images'] if image['role'] == role]


def test_ten_target_images_of_32x32_rgb_as_listed_in_provenance():
    names = sorted(os.listdir(demo_data.TARGET_DIR))
    assert len(names) == 10
    assert names == [image['output'].split('/', 1)[1] for image in images('target')]
    for image in images('target'):
        data = pathlib.Path(demo_data.DIR, image['output']).read_bytes()
        assert hashlib.sha256(data).hexdigest() == image['output_sha256']
        with PIL.Image.open(pathlib.Path(demo_data.DIR, image['output'])) as png:
            assert (png.size, png.mode) == ((32, 32), 'RGB')
            assert (np.asarray(png)[0, 0] == 255).all()   # transparency became white
    dataset = ImageFolderDataset(demo_data.TARGET_DIR)
    assert (len(dataset), dataset.resolution, dataset.num_channels) == (10, 32, 3)


def test_heldout_images_are_every_other_twemoji_emoji():
    dataset = ImageFolderDataset(demo_data.HELDOUT_ZIP)
    heldout = images('heldout')
    assert (len(dataset), dataset.resolution, dataset.num_channels) == (len(heldout), 32, 3)
    assert len(heldout) == 3776
    target = {image['short_name'] for image in images('target')}
    assert target.isdisjoint(image['short_name'] for image in heldout)
    sources = {image['short_name'] for image in images('source')}
    assert sources == target | {image['short_name'] for image in heldout}


def test_source_set_is_every_noto_emoji_of_many_kinds():
    dataset = ImageFolderDataset(demo_data.SOURCE_ZIP)
    source = images('source')
    assert (len(dataset), dataset.resolution, dataset.num_channels) == (len(source), 32, 3) == (3786, 32, 3)
    assert len({image['category'] for image in source}) >= 9
    assert len({image['category'] for image in images('target')}) >= 8   # shots span the kinds


def test_provenance_pins_the_packages_and_their_artwork_licences():
    packages = {package['name']: package for package in provenance()['packages']}
    twitter, google = packages['emoji-datasource-twitter'], packages['emoji-datasource-google']
    assert twitter['artwork_licence']['spdx'] == 'CC-BY-4.0'
    assert google['artwork_licence']['spdx'] == 'Apache-2.0'
    for package in (twitter, google):
        assert package['integrity'].startswith('sha512-') and len(package['sha256']) == 64
    for image in provenance()['images']:
        vendor = 'google' if image['role'] == 'source' else 'twitter'
        assert image['package_file'].startswith(f'package/img/{vendor}/64/')


def test_licence_texts_and_twemoji_attribution_ship_beside_the_images():
    folder = pathlib.Path(demo_data.DIR)
    assert 'Creative Commons Attribution 4.0 International' in (folder / 'LICENSE-CC-BY-4.0.txt').read_text()
    assert 'Apache License' in (folder / 'LICENSE-Apache-2.0.txt').read_text()
    attribution = pathlib.Path(demo_data.ATTRIBUTION).read_text()
    for needed in ('Twitter, Inc and other contributors', 'https://creativecommons.org/licenses/by/4.0/',
                   'Changes made', 'Apache License 2.0'):
        assert needed in attribution


def test_every_shipped_file_is_package_data_in_setup_py():
    setup = (ROOT / 'setup.py').read_text()
    assert "'gda_core.demo_data'" in setup.split('package_data')[0]   # listed as a package
    patterns = re.search(r"'gda_core\.demo_data':\s*\[([^\]]*)\]", setup).group(1)
    patterns = re.findall(r"'([^']+)'", patterns)
    for path in pathlib.Path(demo_data.DIR).rglob('*'):
        relative = path.relative_to(demo_data.DIR).as_posix()
        if path.is_dir() or relative.endswith(('.py', '.pyc')) or '__pycache__' in relative:
            continue
        assert any(glob_match(relative, pattern) for pattern in patterns), relative


def glob_match(path, pattern):
    """setuptools' package_data globbing: '*' stays within one path component."""
    parts, wanted = path.split('/'), pattern.split('/')
    return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))


def test_shipped_data_stays_small():
    total = sum(path.stat().st_size for path in pathlib.Path(demo_data.DIR).rglob('*') if path.is_file()
                and path.suffix != '.pkl')
    assert total < 20_000_000
    assert os.path.getsize(demo_data.SOURCE_MODEL) <= 10 * 2 ** 20
