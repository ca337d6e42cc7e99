"""`gda train --metrics`: each snapshot evaluated as `gda metrics RUN_DIR` would, missing detectors
caught before training starts."""

import glob
import json
import os

from click.testing import CliRunner

from gda_core.cli import main

TINY = ['--source', 'none', '--cbase', '64', '--cmax', '8', '--map', '1', '--zdim', '8',
        '--batch', '2', '--aug', 'noaug']


def _train(tmp_path, *args):
    return CliRunner().invoke(main, ['train', '--outdir', str(tmp_path / 'runs'), *TINY, *args])


def test_each_snapshot_appends_its_metric_records(image_folder, detector_files, tmp_path, monkeypatch):
    import torch
    data = image_folder(tmp_path / 'data', torch.randint(0, 256, [4, 3, 16, 16], dtype=torch.uint8))
    monkeypatch.setenv('GDA_INCEPTION', detector_files['inception'])
    result = _train(tmp_path, '--data', data, '--iters', '2', '--tick', '0.002', '--snap', '1',
                    '--metrics', 'kid')
    assert result.exit_code == 0, result.output
    run_dir, = glob.glob(str(tmp_path / 'runs' / '*'))
    records = [json.loads(line) for line in open(os.path.join(run_dir, 'metric-kid.jsonl'))]
    assert [record['iteration'] for record in records] == [1, 2]
    assert records[0]['snapshot'] == 'network-snapshot-000000.pkl'
    assert 'kid' in records[-1]['results'] and 'kid' in result.output
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert options['metrics'] == ['kid']


def test_a_missing_detector_stops_the_run_before_it_starts(image_folder, tmp_path, monkeypatch):
    import torch
    data = image_folder(tmp_path / 'data', torch.randint(0, 256, [4, 3, 16, 16], dtype=torch.uint8))
    monkeypatch.setenv('GDA_VGG16', str(tmp_path / 'nowhere' / 'vgg16.pt'))
    result = _train(tmp_path, '--data', data, '--iters', '1', '--metrics', 'pr')
    assert result.exit_code == 2
    assert 'vgg16.pt' in result.output and 'Traceback' not in result.output
    assert not os.path.exists(tmp_path / 'runs') or not os.listdir(tmp_path / 'runs')


def test_unknown_metric_names_the_choices(image_folder, tmp_path):
    import torch
    data = image_folder(tmp_path / 'data', torch.randint(0, 256, [4, 3, 16, 16], dtype=torch.uint8))
    result = _train(tmp_path, '--data', data, '--iters', '1', '--metrics', 'fid,bogus')
    assert result.exit_code == 2 and 'bogus' in result.output and 'intra_lpips' in result.output
