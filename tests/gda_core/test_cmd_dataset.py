"""`gda dataset`: converts and reports; mistakes exit 2 with one line."""

import PIL.Image
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
