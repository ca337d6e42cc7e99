"""examples/demo/train_source.sh with stand-ins for `gda` and python that record their calls: a new
run from scratch with the demo source's settings, `--resume` of that run on every later call, a run
stopped before its first snapshot set aside, and --status measuring the newest run."""

import os
import pathlib
import shutil
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'demo' / 'train_source.sh'

# The stand-in gda: a new run makes RUN_DIR and, unless FAKE_NO_SNAPSHOT=1, a first snapshot.
FAKE_GDA = r'''#!/usr/bin/env bash
set -eu
echo "$*" >> "$FAKE_LOG"
args=("$@"); outdir=""; desc=""
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in --outdir) outdir=${args[i+1]};; --desc) desc=${args[i+1]};; esac
done
if [ -n "$outdir" ]; then
    n=$(ls -d "$outdir"/*/ 2>/dev/null | wc -l); run=$(printf '%s/%05d-%s' "$outdir" "$n" "$desc")
    mkdir -p "$run"
    [ "${FAKE_NO_SNAPSHOT:-0}" = 1 ] || touch "$run/network-snapshot-000004.pkl"
fi
'''


@pytest.fixture
def env(tmp_path):
    fake = tmp_path / 'gda'
    fake.write_text(FAKE_GDA)
    fake.chmod(0o755)
    python = tmp_path / 'python'
    python.write_text('#!/usr/bin/env bash\necho "python $*" >> "$FAKE_LOG"\n')
    python.chmod(0o755)
    data = tmp_path / 'emoji.zip'
    data.write_bytes(b'not read by the stand-in')
    return dict(os.environ, GDA=str(fake), PYTHON=str(python), DATA=str(data),
                FAKE_LOG=str(tmp_path / 'calls'), TOTAL_KIMG='10', NICE='0')


def run(env, work, *extra):
    return subprocess.run(['bash', str(SCRIPT), str(work), *extra], env=env, capture_output=True,
                          text=True, timeout=60)


def calls(env):
    return pathlib.Path(env['FAKE_LOG']).read_text().splitlines()


pytestmark = pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')


def test_first_call_trains_from_scratch_with_the_cifar_based_settings(env, tmp_path):
    assert run(env, tmp_path / 'work').returncode == 0
    first = calls(env)[0]
    for needed in ('--source none', '--cfg cifar', '--cbase 2048 --cmax 128 --zdim 256',
                   '--ada-kimg 100', '--kimg 10', f'--data {env["DATA"]}'):
        assert needed in first


def test_later_calls_resume_the_same_run(env, tmp_path):
    work = tmp_path / 'work'
    run(env, work)
    assert run(env, work).returncode == 0
    assert calls(env)[1] == f'train --resume {work}/runs/00000-demo-source --kimg 10'
    assert sorted(os.listdir(work / 'runs')) == ['00000-demo-source']
    assert len((work / 'commands.log').read_text().splitlines()) == 2


def test_a_run_stopped_before_its_first_snapshot_is_set_aside(env, tmp_path):
    work = tmp_path / 'work'
    (work / 'runs' / '00000-demo-source').mkdir(parents=True)
    result = run(env, work)
    assert 'setting aside' in result.stdout
    assert (work / 'runs' / '00000-demo-source-empty').is_dir()
    assert '--source none' in calls(env)[0]


def test_status_measures_the_newest_run(env, tmp_path):
    work = tmp_path / 'work'
    assert 'no run' in run(env, work, '--status').stdout
    run(env, work)
    assert run(env, work, '--status').returncode == 0
    assert calls(env)[-1] == (f'python examples/demo/source_diversity.py {work}/runs/00000-demo-source '
                              f'--data {env["DATA"]} --log {work}/diversity.jsonl')


def test_cpu_bf16_reaches_both_the_first_call_and_the_resumes(env, tmp_path):
    work = tmp_path / 'work'
    env = dict(env, CPU_BF16='1')
    run(env, work)
    assert run(env, work).returncode == 0
    first, resumed = calls(env)
    assert '--source none' in first and first.endswith('--kimg 10 --cpu-bf16')
    assert resumed == f'train --resume {work}/runs/00000-demo-source --kimg 10 --cpu-bf16'
