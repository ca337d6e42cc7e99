"""examples/demo/train_source_gpu.sh with stand-ins for `gda` and python: `pack` takes the run with
its newest snapshot only, `train` resumes it on CUDA and measures and ships the newest snapshot,
and the planned stop by `timeout` counts as success."""

import os
import pathlib
import shutil
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'demo' / 'train_source_gpu.sh'

pytestmark = pytest.mark.skipif(shutil.which('bash') is None or shutil.which('timeout') is None,
                                reason='needs bash and timeout')


def stand_in(path, body):
    path.write_text('#!/usr/bin/env bash\n' + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def env(tmp_path):
    log = tmp_path / 'calls'
    gda = stand_in(tmp_path / 'gda', 'echo "gda $*" >> "$FAKE_LOG"\nexit "${FAKE_GDA_RC:-0}"\n')
    python = stand_in(tmp_path / 'python', 'echo "python $*" >> "$FAKE_LOG"\n')
    return dict(os.environ, GDA=gda, PYTHON=python, FAKE_LOG=str(log), LIMIT_S='30')


def make_run(folder):
    folder.mkdir()
    for name in ('training_options.json', 'stats.jsonl', 'log.txt', 'network-snapshot-000004.pkl',
                 'network-snapshot-000008.pkl', 'fakes000008.png', 'fakes_init.png',
                 'diversity-000008.png'):
        (folder / name).write_text(name)
    return folder


def run(env, *args):
    return subprocess.run(['bash', str(SCRIPT), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=60)


def test_pack_keeps_the_newest_snapshot_and_what_resume_reads(env, tmp_path):
    result = run(env, 'pack', make_run(tmp_path / 'run'), tmp_path / 'packed')
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / 'packed')) == [
        'log.txt', 'network-snapshot-000008.pkl', 'stats.jsonl', 'training_options.json']


def test_pack_without_a_snapshot_is_a_usage_error(env, tmp_path):
    (tmp_path / 'empty').mkdir()
    result = run(env, 'pack', tmp_path / 'empty', tmp_path / 'packed')
    assert result.returncode == 2 and 'no snapshot' in result.stderr


@pytest.mark.parametrize('gda_rc, expected', [(0, 0), (124, 0), (1, 1)])
def test_train_resumes_on_cuda_then_measures_and_ships_the_newest_snapshot(env, tmp_path, gda_rc,
                                                                           expected):
    run_dir, out = make_run(tmp_path / 'run'), tmp_path / 'out'
    result = run(dict(env, FAKE_GDA_RC=str(gda_rc)), 'train', run_dir, out)
    assert result.returncode == expected, result.stderr
    gda, diversity, ship = pathlib.Path(env['FAKE_LOG']).read_text().splitlines()
    assert gda == f'gda train --resume {run_dir} --kimg 3000 --snap 25 --device cuda'
    newest = run_dir / 'network-snapshot-000008.pkl'
    assert diversity.startswith(f'python examples/demo/source_diversity.py {newest} --samples 1024')
    assert ship.startswith(f'python examples/demo/ship_source.py {newest} --ship {out}/ship')
    copied = set(os.listdir(out))
    assert {'network-snapshot-000008.pkl', 'fakes000008.png', 'diversity-000008.png'} <= copied
    assert 'fakes_init.png' not in copied   # the newest grid, not the one before training
