"""Rebuild gda's bundled demo data from the npm packages it came from.

The demo pairs two drawings of the same 3,786 emoji: Noto Emoji (Google, Apache-2.0) is the source
domain a small generator is trained on from scratch; Twemoji (Twitter, CC-BY 4.0) is the target
domain, of which 10 images are the few-shot training set and the rest are held out for the
adaptation benchmark. Every image is a 64x64 RGBA PNG in the `emoji-datasource-*` packages,
composited onto white and resized to 32x32 by the same code as `gda dataset`.

    python examples/demo/make_demo_data.py                   # rewrites gda_core/demo_data
    python examples/demo/make_demo_data.py --cache DIR       # where the npm tarballs are kept

Needs `npm` (only `npm pack`, which downloads a package tarball) and the registry; everything else
is offline. Tarballs are checked against pinned sha512 integrities, and the artwork licence
statements against the packages' README before anything is written.
"""

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import PIL.Image

from stylegan2_ada.dataset_tool import convert_dataset
from stylegan2_ada.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Package:
    """An npm package pinned by version and the registry's sha512 integrity."""
    name: str
    version: str
    integrity: str

    @property
    def spec(self):
        return f'{self.name}@{self.version}'

    @property
    def tarball(self):
        return f'{self.name}-{self.version}.tgz'


@dataclasses.dataclass(frozen=True)
class Artwork:
    """One vendor's emoji images: the package, its image folder and the licence its README states."""
    package: Package
    vendor: str
    licence: str        # SPDX id of the artwork licence
    statement: tuple    # words that must all appear on one README line naming the artwork licence


SOURCE = Artwork(Package('emoji-datasource-google', '16.0.0',
                         'sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=='),
                 'google', 'Apache-2.0', ('Noto images', 'Apache License 2.0'))
TARGET = Artwork(Package('emoji-datasource-twitter', '16.0.0',
                         'sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ=='),
                 'twitter', 'CC-BY-4.0', ('Twitter images', 'Creative Commons Attribution 4.0'))
# The licence texts shipped beside the images (the package itself is CC0-1.0).
LICENCE_TEXTS = Package('spdx-license-list', '6.12.0',
                        'sha512-+nUYqm3aZMSHbjsthK+i/HHI2okTElCvqwUd4k8QcSk+FTGgjq+fsdFj2wZOaX6XmR2JdWhf/NeflNnvKOjcnQ==')

# The set: every emoji both vendors draw, skin-tone variants included (3,786 images in v16.0.0):
# faces, people, animals, food, objects, symbols, flags. Many different things in one style is what a
# GAN trained from scratch needs to stay diverse (108 faces alone collapse onto one face, NVIDIA's
# code as well as ours; docs/demo.md).
# The 10-shot target set: fixed, one emoji from each of ten emoji.json categories' kinds of content
# (a face, a hand, an animal, a plant, food, a vehicle, a ball, an object, a sign, a flag); every
# other Twemoji image is held out.
SHOTS = ('grinning', '+1', 'dog', 'sunflower', 'pizza', 'rocket', 'soccer', 'bulb', 'warning', 'jp')

RESOLUTION = 32
BACKGROUND = 'white'
RESIZE_FILTER = 'lanczos'
SOURCE_ZIP = f'noto-emoji-{RESOLUTION}.zip'
HELDOUT_ZIP = f'heldout-twemoji-{RESOLUTION}.zip'
TARGET_DIR = 'target'


# -- registry -------------------------------------------------------------------------------------

def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest


def integrity_of(path):
    """npm's integrity string (sha512, base64) of a file."""
    return 'sha512-' + base64.b64encode(file_digest(path, 'sha512').digest()).decode('ascii')


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def fetch(package, cache, run=subprocess.run):
    """The package tarball in `cache`, fetched with `npm pack` unless a verified copy is there."""
    path = os.path.join(cache, package.tarball)
    if not (os.path.isfile(path) and integrity_of(path) == package.integrity):
        if shutil.which('npm') is None and run is subprocess.run:
            raise UserError(f'npm is needed to fetch {package.spec}; install Node.js/npm or put '
                            f'{package.tarball} into {cache}')
        os.makedirs(cache, exist_ok=True)
        run(['npm', 'pack', package.spec, '--pack-destination', cache, '--silent'], check=True,
            stdout=subprocess.DEVNULL)
    found = integrity_of(path)
    if found != package.integrity:
        raise UserError(f'{path} has integrity {found}, not the pinned {package.integrity}; '
                        f'delete it and run again')
    return path


def read_members(tarball, names):
    """{name: bytes} of the named members of a .tgz; a missing one is an error naming it."""
    wanted = set(names)
    found = {}
    with tarfile.open(tarball, 'r:gz') as archive:
        for member in archive:
            if member.name in wanted and member.isfile():
                found[member.name] = archive.extractfile(member).read()
    missing = sorted(wanted - set(found))
    if missing:
        raise UserError(f'{tarball} lacks {", ".join(missing[:5])}'
                        + (f' and {len(missing) - 5} more' if len(missing) > 5 else ''))
    return found


def check_licence(artwork, readme, package_json):
    """The README line stating the artwork licence, or an error: never ship unverified images."""
    meta = json.loads(package_json)
    if (meta.get('name'), meta.get('version')) != (artwork.package.name, artwork.package.version):
        raise UserError(f'the tarball holds {meta.get("name")}@{meta.get("version")}, not '
                        f'{artwork.package.spec}')
    for line in readme.splitlines():
        if all(word in line for word in artwork.statement):
            return line.strip()
    raise UserError(f'{artwork.package.spec}: its README no longer states the {artwork.licence} '
                    f'licence of the {artwork.vendor} images ({" / ".join(artwork.statement)}); '
                    f'check the licence before shipping them')


# -- selection ------------------------------------------------------------------------------------

def select_emoji(entries, vendors):
    """Every emoji image all `vendors` draw, skin-tone variants after their base emoji, in Unicode
    CLDR order (emoji.json's sort_order). A variant is named '<short_name>-<skin code>'."""
    chosen = []
    for entry in sorted(entries, key=lambda entry: entry['sort_order']):
        images = [dict(entry, skin=None)]
        for skin, variant in sorted((entry.get('skin_variations') or {}).items()):
            images.append(dict(entry, **{key: value for key, value in variant.items()
                                         if key == 'image' or key == 'unified' or key.startswith('has_img_')},
                               short_name=f"{entry['short_name']}-{skin.lower()}", skin=skin))
        chosen += [image for image in images if all(image.get(f'has_img_{vendor}') for vendor in vendors)]
    for image in chosen:
        image.pop('skin_variations', None)
    return chosen


def split_shots(faces, shots=SHOTS):
    """(the few-shot emoji in `shots` order, the held-out rest in sort order)."""
    by_name = {face['short_name']: face for face in faces}
    missing = [name for name in shots if name not in by_name]
    if missing:
        raise UserError(f'few-shot emoji {", ".join(missing)} are not among the selected emoji')
    return [by_name[name] for name in shots], [face for face in faces if face['short_name'] not in shots]


def member_name(vendor, face):
    return f'package/img/{vendor}/64/{face["image"]}'


# -- images ---------------------------------------------------------------------------------------

def convert(images, dest, resolution=RESOLUTION):
    """Composite `images` [(name, png bytes)] onto white and resize them, as `gda dataset` does,
    into dest (.zip or new folder), keeping their order; returns the conversion report."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = os.path.join(tmp, 'staged.zip')
        with zipfile.ZipFile(staged, 'w') as archive:
            for index, (name, data) in enumerate(images):
                archive.writestr(f'{index:04d}-{name}', data)
        return convert_dataset(staged, dest, resolution, square='pad', resize_filter=RESIZE_FILTER,
                               background=BACKGROUND, channels='rgb')


def write_named_folder(images, dest, resolution=RESOLUTION):
    """Converted images as dest/<name>.png (a plain folder `gda train --data` reads)."""
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, 'converted')
        convert(images, converted, resolution)
        os.makedirs(dest, exist_ok=True)
        for index, (name, _) in enumerate(images):
            shutil.copyfile(os.path.join(converted, f'{index // 1000:05d}', f'img{index:08d}.png'),
                            os.path.join(dest, name))


def image_record(face, vendor, member, data, role, output):
    size = PIL.Image.open(io.BytesIO(data)).size
    return dict(role=role, short_name=face['short_name'], unified=face['unified'],
                category=face['category'], subcategory=face['subcategory'], package_file=member, original_size=list(size),
                original_sha256=sha256_of(data), output=output)


def output_bytes(folder, output):
    """The bytes of an output named 'file.zip:member' or 'folder/file.png', relative to folder."""
    if ':' in output:
        archive, member = output.split(':', 1)
        with zipfile.ZipFile(os.path.join(folder, archive)) as zipped:
            return zipped.read(member)
    with open(os.path.join(folder, *output.split('/')), 'rb') as file:
        return file.read()


def provenance(tarballs, licences, records):
    """provenance.json: where every shipped or built image came from and how it was changed."""
    packages = [dict(name=package.name, version=package.version, integrity=package.integrity,
                     sha256=file_digest(path, 'sha256').hexdigest(), fetched_with=f'npm pack {package.spec}',
                     artwork_licence=licences.get(package.name))
                for package, path in tarballs]
    return dict(
        script='examples/demo/make_demo_data.py',
        packages=packages,
        selection=dict(emoji='every image both vendors draw, skin-tone variants included',
                       shots=list(SHOTS),
                       order='emoji.json sort_order (Unicode CLDR), skin-tone variants after their base'),
        processing=dict(steps=['alpha composited onto white', f'resized 64x64 -> {RESOLUTION}x{RESOLUTION} '
                               f'({RESIZE_FILTER})', 'saved as RGB PNG'],
                        resolution=RESOLUTION, background=BACKGROUND, filter=RESIZE_FILTER),
        images=records)


def provenance_json(record):
    """JSON text with one line per image (diffs stay readable, the file small)."""
    head = json.dumps(dict(record, images=[]), indent=1)[:-len('[]\n}')]
    lines = ',\n'.join('  ' + json.dumps(image) for image in record['images'])
    return f'{head}[\n{lines}\n ]\n}}\n'


def licence_text(spdx_tarball, spdx_id):
    member = f'package/licenses/{spdx_id}.json'
    return json.loads(read_members(spdx_tarball, [member])[member])['licenseText']


ATTRIBUTION = """\
# Demo data: attribution and licences

gda's demo adapts a generator of Noto Emoji to Twemoji. The images here are derived from artwork
by others.

## Twemoji (target domain: `{target_dir}/`, `{heldout}`)

Twemoji graphics Copyright 2019 Twitter, Inc and other contributors
(https://github.com/jdecked/twemoji, formerly https://github.com/twitter/twemoji),
licensed under CC-BY 4.0: https://creativecommons.org/licenses/by/4.0/ (full text:
LICENSE-CC-BY-4.0.txt).
Changes made: the 64x64 PNGs of npm package {target_spec} were composited onto a white
background and resized to {res}x{res}.

## Noto Emoji (source domain)

Noto Emoji images by Google (https://github.com/googlefonts/noto-emoji), licensed under
the Apache License 2.0 (full text: LICENSE-Apache-2.0.txt). The demo source generator is trained
on the 64x64 PNGs of npm package {source_spec}, composited onto white and resized to {res}x{res}
(`{source_zip}`, shipped here: the benchmark's detector and correspondence metric read it).

## Where they came from

Both image sets come from the `emoji-datasource-*` packages of emoji-data (Cal Henderson, MIT
licence, https://github.com/iamcal/emoji-data), whose README states the artwork licences above.
provenance.json lists which file is which emoji, with checksums of the original files, the outputs
and the package tarballs. Rebuild everything with `python examples/demo/make_demo_data.py`.
"""


# -- main -----------------------------------------------------------------------------------------

def build(cache, ship, run=subprocess.run, log=print):
    """Fetch, verify, select and convert; write the shipped files (source set, target shots,
    held-out set, notices) into `ship`."""
    tarballs = {artwork.vendor: fetch(artwork.package, cache, run) for artwork in (SOURCE, TARGET)}
    spdx = fetch(LICENCE_TEXTS, cache, run)
    licences = {}
    catalogue = None
    for artwork in (SOURCE, TARGET):
        meta = read_members(tarballs[artwork.vendor], ['package/README.md', 'package/package.json',
                                                       'package/emoji.json'])
        licences[artwork.package.name] = dict(
            spdx=artwork.licence, readme_statement=check_licence(
                artwork, meta['package/README.md'].decode('utf-8'),
                meta['package/package.json'].decode('utf-8')))
        if artwork is SOURCE:
            catalogue = json.loads(meta['package/emoji.json'])
    faces = select_emoji(catalogue, (SOURCE.vendor, TARGET.vendor))
    shots, heldout = split_shots(faces)
    log(f'{len(faces)} emoji: {len(shots)} target shots, {len(heldout)} held out')

    def images(artwork, chosen):
        members = [member_name(artwork.vendor, face) for face in chosen]
        data = read_members(tarballs[artwork.vendor], members)
        return [(face, member, data[member]) for face, member in zip(chosen, members)]

    records = []
    source_images = images(SOURCE, faces)
    os.makedirs(ship, exist_ok=True)
    source_zip = os.path.join(ship, SOURCE_ZIP)
    report = convert([(face['short_name'] + '.png', data) for face, _, data in source_images], source_zip)
    log(report.lines()[0])
    for index, (face, member, data) in enumerate(source_images):
        records.append(image_record(face, SOURCE.vendor, member, data, 'source',
                                    f'{SOURCE_ZIP}:{index // 1000:05d}/img{index:08d}.png'))

    target_dir = os.path.join(ship, TARGET_DIR)
    if os.path.isdir(target_dir):
        shutil.rmtree(target_dir)
    shot_images = images(TARGET, shots)
    names = [f'{index:02d}-{face["short_name"]}.png' for index, (face, _, _) in enumerate(shot_images)]
    write_named_folder([(name, data) for name, (_, _, data) in zip(names, shot_images)], target_dir)
    for name, (face, member, data) in zip(names, shot_images):
        records.append(image_record(face, TARGET.vendor, member, data, 'target', f'{TARGET_DIR}/{name}'))
    heldout_images = images(TARGET, heldout)
    report = convert([(face['short_name'] + '.png', data) for face, _, data in heldout_images],
                     os.path.join(ship, HELDOUT_ZIP))
    log(report.lines()[0])
    for index, (face, member, data) in enumerate(heldout_images):
        records.append(image_record(face, TARGET.vendor, member, data, 'heldout',
                                    f'{HELDOUT_ZIP}:{index // 1000:05d}/img{index:08d}.png'))

    for record in records:
        record['output_sha256'] = sha256_of(output_bytes(ship, record['output']))
    record = provenance([(SOURCE.package, tarballs[SOURCE.vendor]),
                         (TARGET.package, tarballs[TARGET.vendor]),
                         (LICENCE_TEXTS, spdx)], licences, records)
    with open(os.path.join(ship, 'provenance.json'), 'w') as file:
        file.write(provenance_json(record))
    for spdx_id in (TARGET.licence, SOURCE.licence):
        with open(os.path.join(ship, f'LICENSE-{spdx_id}.txt'), 'w', encoding='utf-8') as file:
            file.write(licence_text(spdx, spdx_id).rstrip() + '\n')
    with open(os.path.join(ship, 'ATTRIBUTION.md'), 'w', encoding='utf-8') as file:
        file.write(ATTRIBUTION.format(target_dir=TARGET_DIR, heldout=HELDOUT_ZIP, res=RESOLUTION,
                                      source_zip=SOURCE_ZIP, target_spec=TARGET.package.spec,
                                      source_spec=SOURCE.package.spec))
    log(f'Source training set: {source_zip}')
    log(f'Shipped: {target_dir}/ ({len(shots)} images), {os.path.join(ship, HELDOUT_ZIP)}, '
        f'provenance.json, ATTRIBUTION.md and licences in {ship}')
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cache', default=os.path.join(os.path.expanduser('~'), '.cache', 'gda', 'npm'),
                        help='where npm tarballs are kept (default: ~/.cache/gda/npm)')
    parser.add_argument('--ship', default=os.path.join(REPO, 'gda_core', 'demo_data'),
                        help='where the source set, target, held-out images and notices go '
                             '(default: gda_core/demo_data)')
    args = parser.parse_args(argv)
    try:
        build(args.cache, args.ship)
    except (UserError, subprocess.CalledProcessError) as error:
        print(f'Error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
