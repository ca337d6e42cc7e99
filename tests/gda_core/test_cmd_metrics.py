"""`gda metrics`: a run directory (snapshots without records, all, latest), a network file with
--data, JSON output, and one-line errors (unknown metric, missing detector offline)."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import main
from stylegan2_ada import detectors
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.networks import Generator


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    for name in ('DNNLIB_CACHE_DIR', 'GDA_INCEPTION', 'GDA_VGG16', 'GDA_HED'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(detectors, 'URL_BASE', 'http://127.0.0.1:9/unreachable/')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(seed):
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


@pytest.fixture
def run(tmp_path):
    """A run directory with two snapshots whose training set exists; returns (run dir, data)."""
    data = tmp_path / 'data'
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        PIL.Image.fromarray(rng.integers(0, 256, [16, 16, 3], dtype=np.uint8)).save(data / f'{i}.png')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text('{}')
    for kimg in (1, 2):
        save_snapshot(run_dir / f'network-snapshot-{kimg:06d}.pkl', dict(
            G=_generator(kimg), D=None, G_ema=_generator(kimg), augment_pipe=None,
            training_set_kwargs=dict(path=str(data), resolution=16),
            gda=dict(source=None, source_G=_generator(0), plugins=[], loop=dict(cur_nimg=kimg * 1000, iteration=kimg))))
    return run_dir, data


def _invoke(*args):
    return CliRunner().invoke(main, ['metrics', *map(str, args)])


def test_a_run_directory_gets_records_for_snapshots_without_them(run, standins, tmp_path):
    run_dir, _ = run
    inception = standins.save(standins.Inception(), tmp_path / 'inception.pt')
    result = _invoke(run_dir, '--metrics', 'fid,scs', '--num-gen', 6, '--inception', inception)
    assert result.exit_code == 0, result.output
    assert 'network-snapshot-000001.pkl: fid, scs' in result.output and 'fid ' in result.output
    assert len((run_dir / 'metric-fid.jsonl').read_text().splitlines()) == 2
    again = _invoke(run_dir, '--metrics', 'fid', '--num-gen', 6, '--inception', inception)
    assert 'already has fid' in again.output
    latest = _invoke(run_dir, '--metrics', 'fid', '--num-gen', 6, '--inception', inception, '--snapshots', 'latest',
                     '--json')
    assert latest.exit_code == 0, latest.output
    record = json.loads(latest.stdout.strip().splitlines()[-1])
    assert record['snapshot'] == 'network-snapshot-000002.pkl' and record['kimg'] == 2
    assert len((run_dir / 'metric-fid.jsonl').read_text().splitlines()) == 3


def test_a_network_file_outside_a_run_only_prints(run, standins, tmp_path):
    run_dir, data = run
    lone = tmp_path / 'lone.pkl'
    lone.write_bytes((run_dir / 'network-snapshot-000001.pkl').read_bytes())
    vgg = standins.save(standins.VGG16(), tmp_path / 'vgg.pt')
    result = _invoke(lone, '--metrics', 'pr', '--num-gen', 8, '--data', data, '--vgg16', vgg, '--json')
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record['results']) == {'precision', 'recall'} and record['network'] == str(lone)
    assert not list(tmp_path.glob('metric-*.jsonl'))


def test_errors_are_one_line(run, tmp_path):
    run_dir, _ = run
    result = _invoke(run_dir, '--metrics', 'fid,bogus')
    assert result.exit_code == 2 and 'unknown metric(s) bogus' in result.output
    offline = _invoke(run_dir, '--metrics', 'kid')
    assert offline.exit_code == 2
    assert 'inception-2015-12-05.pt' in offline.output and '--inception' in offline.output
    assert 'Traceback' not in offline.output
    folder = _invoke(tmp_path / 'data', '--metrics', 'fid')
    assert folder.exit_code == 2 and 'not a run directory' in folder.output
