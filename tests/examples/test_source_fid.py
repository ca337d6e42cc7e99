"""examples/demo/source_fid.py: the benchmark detector's KID/FID of a source run's snapshots."""

import json
import math

import pytest

from gda_testkit import plugins as HP
from gda_testkit.examples import load_demo_script



@pytest.fixture(scope='module')
def script():
    return load_demo_script('source_fid')


def test_every_keeps_the_first_snapshot_past_each_multiple_and_the_newest(script):
    paths = [f'run/network-snapshot-{k:06d}.pkl' for k in (0, 20, 40, 60, 80, 83)]
    assert script.every_nth_kimg(paths, 40) == [paths[0], paths[2], paths[4], paths[5]]
    assert script.every_nth_kimg(paths, 0) == paths
    uneven = [f'run/network-snapshot-{k:06d}.pkl' for k in (4, 37, 41, 45, 82, 90, 123, 127)]
    assert script.every_nth_kimg(uneven, 40) == [uneven[i] for i in (0, 2, 4, 6, 7)]


def test_a_run_is_measured_once_per_snapshot(script, tmp_path, monkeypatch, capsys):
    noto, twemoji = HP.write_images(tmp_path / 'noto', seed=1), HP.write_images(tmp_path / 'tw', seed=2)
    shots = HP.write_images(tmp_path / 'shots', count=4, seed=3)
    run = tmp_path / 'run'
    run.mkdir()
    HP.write_source(run / 'network-snapshot-000000.pkl')
    options = dict(source=None, data=str(shots), heldout=str(twemoji), source_data=str(noto),
                   detector_steps=2, detector_seed=0, cache=False, num_gen=8, num_pairs=8)
    monkeypatch.setattr(script, 'benchmark_options',
                        lambda samples, views: dict(options, num_gen=samples, detector_views=views))
    log = tmp_path / 'fid.jsonl'
    assert script.main([str(run), '--log', str(log), '--samples', '8']) == 0
    reference = json.loads(capsys.readouterr().out.splitlines()[0])['reference']
    assert set(reference) == {'noto_halves', 'noto_vs_twemoji'}
    assert all(math.isfinite(v) for pair in reference.values() for v in pair.values())
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record['snapshot'] == 'network-snapshot-000000.pkl' and record['samples'] == 8
    assert record['detector_views'] == 'colour'   # the benchmark's default detector
    for domain in ('noto', 'twemoji'):
        assert set(record[domain]) == {'kid', 'fid'}
        assert all(math.isfinite(value) for value in record[domain].values())
    assert script.main([str(run), '--log', str(log)]) == 0   # nothing new: not measured again
    assert len(log.read_text().splitlines()) == 1
    # The other detector has not measured it yet.
    assert script.main([str(run), '--log', str(log), '--samples', '8', '--detector-views', 'geometry']) == 0
    assert [json.loads(line)['detector_views'] for line in log.read_text().splitlines()] == \
        ['colour', 'geometry']


def test_a_missing_path_is_a_one_line_error(script, tmp_path, capsys):
    assert script.main([str(tmp_path / 'nowhere')]) == 2
    assert 'neither a run directory nor a snapshot' in capsys.readouterr().err
