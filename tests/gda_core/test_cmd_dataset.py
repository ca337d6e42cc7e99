"""`gda dataset`: converts and reports; mistakes exit 2 with one line."""

import os
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from gda_core.cli import main
from stylegan2_ada.dataset import ImageFolderDataset


def test_dataset_command_converts_and_reports(tmp_path):
    (tmp_path / 'src').mkdir()
    PIL.Image.new('RGBA', (40, 20), (10, 20, 30, 0)).save(tmp_path / 'src/a.png')
    PIL.Image.new('L', (20, 20), 7).save(tmp_path / 'src/b.png')
    result = CliRunner().invoke(main, ['dataset', str(tmp_path / 'src'), str(tmp_path / 'out.zip'),
                                       '--resolution', '8', '--square', 'pad', '--background', 'black'])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f'Wrote 2 images (8x8 RGB) to {tmp_path / "out.zip"}'
    assert any(line.startswith('  transparency composited onto black: 1') for line in lines)
    assert any(line.startswith('  padded to square with black: 1') for line in lines)
    dataset = ImageFolderDataset(tmp_path / 'out.zip')
    assert len(dataset) == 2 and dataset[0][0].max() == 0  # fully transparent -> black background


def test_dataset_command_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ['dataset', str(tmp_path / 'nowhere'), str(tmp_path / 'o.zip'), '--resolution', '8'])
    assert result.exit_code == 2 and result.output == f'Error: dataset {tmp_path / "nowhere"} does not exist\n'
    result = runner.invoke(main, ['dataset', str(tmp_path), str(tmp_path / 'o.zip'), '--resolution', '12'])
    assert result.exit_code == 2 and 'power of two' in result.output


def one_line_error(result):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith('Error: '), result.output
    return lines[0]


def write_source(folder, count=3):
    folder.mkdir()
    for i in range(count):   # noise: about 800 bytes per PNG
        PIL.Image.fromarray(np.random.RandomState(i).randint(0, 256, (16, 16, 3), np.uint8)).save(
            folder / f'{i}.png')
    return str(folder)


def test_an_existing_dest_zip_needs_overwrite(tmp_path):
    src, dest = write_source(tmp_path / 'src'), str(tmp_path / 'out.zip')
    runner = CliRunner()
    assert runner.invoke(main, ['dataset', src, dest, '--resolution', '8']).exit_code == 0
    before = (tmp_path / 'out.zip').read_bytes()
    line = one_line_error(runner.invoke(main, ['dataset', src, dest, '--resolution', '16']))
    assert line == f'Error: {dest} already exists; pass --overwrite to replace it, or choose a new name'
    assert (tmp_path / 'out.zip').read_bytes() == before
    result = runner.invoke(main, ['dataset', src, dest, '--resolution', '16', '--overwrite'])
    assert result.exit_code == 0, result.output
    assert ImageFolderDataset(dest).resolution == 16


def test_a_corrupt_source_archive_is_one_line(tmp_path):
    src = write_source(tmp_path / 'src')
    archive = tmp_path / 'src.zip'
    with zipfile.ZipFile(archive, 'w') as out:
        for name in sorted(os.listdir(src)):
            out.write(os.path.join(src, name), name)
    with zipfile.ZipFile(archive) as check:
        offset = check.getinfo('1.png').header_offset + 30 + len('1.png')
    data = bytearray(archive.read_bytes())
    data[offset + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ['dataset', str(archive), str(tmp_path / 'out.zip'),
                                       '--resolution', '8'])
    line = one_line_error(result)
    assert f'dataset {archive}: member 1.png is corrupt (its CRC check fails)' in line
    assert sorted(os.listdir(tmp_path)) == ['src', 'src.zip']


@pytest.mark.parametrize('dest', ['out.zip', 'outdir'])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_disk, dest):
    src = write_source(tmp_path / 'src', count=20)
    small_disk(2000)
    result = CliRunner().invoke(main, ['dataset', src, str(tmp_path / dest), '--resolution', '16'])
    line = one_line_error(result)
    assert line.startswith(f'Error: the disk is full: no space left on device writing {tmp_path / dest} (')
    assert 'it needs about' in line
    assert sorted(os.listdir(tmp_path)) == ['src']
