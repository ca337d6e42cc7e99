"""examples/demo/train_source.sh's chunking, with a stand-in for `gda` that records its calls and
writes snapshots: from scratch, chained warm restarts without --resume, exact --resume with it."""

import os
import pathlib
import shutil
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'demo' / 'train_source.sh'

# The stand-in: `gda train --help` mentions --resume only when FAKE_RESUME=1; a training call
# "trains" FAKE_STEP kimg (at most what it was asked for) and writes that snapshot.
FAKE_GDA = r'''#!/usr/bin/env bash
set -eu
echo "$*" >> "$FAKE_LOG"
if [ "$2" = "--help" ]; then
    echo "Options: --data --source"; [ "${FAKE_RESUME:-0}" = 1 ] && echo "  --resume RUN_DIR"
    exit 0
fi
args=("$@"); outdir=""; desc=""; kimg=0; resume=""
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --outdir) outdir=${args[i+1]};; --desc) desc=${args[i+1]};;
        --kimg) kimg=${args[i+1]};; --resume) resume=${args[i+1]};;
    esac
done
if [ -n "$resume" ]; then
    run=$resume
    last=$(ls "$run"/network-snapshot-*.pkl | sort | tail -n 1); last=$(basename "$last" .pkl)
    kimg=$(cat "$run/goal"); now=$((10#${last##*-} + FAKE_STEP))
else
    n=$(ls -d "$outdir"/*/ 2>/dev/null | wc -l); run=$(printf '%s/%05d-%s' "$outdir" "$n" "$desc")
    mkdir -p "$run"; echo "$kimg" > "$run/goal"; now=$FAKE_STEP
fi
[ "$now" -gt "$kimg" ] && now=$kimg
touch "$(printf '%s/network-snapshot-%06d.pkl' "$run" "$now")"
[ "$now" -lt "$kimg" ] && exit 3   # "killed" before the end
exit 0
'''


@pytest.fixture
def env(tmp_path):
    fake = tmp_path / 'gda'
    fake.write_text(FAKE_GDA)
    fake.chmod(0o755)
    data = tmp_path / 'faces.zip'
    data.write_bytes(b'not read by the stand-in')
    return dict(os.environ, GDA=str(fake), DATA=str(data), FAKE_LOG=str(tmp_path / 'calls'),
                TOTAL_KIMG='10', FAKE_STEP='4', NICE='0')


def run(env, work, *extra):
    return subprocess.run(['bash', str(SCRIPT), str(work), *extra], env=env, capture_output=True,
                          text=True, timeout=60)


def calls(env):
    return [line for line in pathlib.Path(env['FAKE_LOG']).read_text().splitlines()
            if '--help' not in line]


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_chunks_chain_warm_restarts_without_resume_until_the_total(env, tmp_path):
    work = tmp_path / 'work'
    first = run(env, work)
    assert first.returncode == 3                     # the chunk was "killed" after 4 kimg
    assert '--source none' in calls(env)[0] and '--kimg 10' in calls(env)[0]
    assert '--cbase 2048 --cmax 128' in calls(env)[0]
    second = run(env, work)                          # run again: continue from the snapshot
    assert second.returncode == 3
    assert f'--source {work}/runs/00000-demo-source/network-snapshot-000004.pkl' in calls(env)[1]
    assert '--kimg 6' in calls(env)[1] and '--cbase' not in calls(env)[1]
    third = run(env, work)
    assert third.returncode == 0 and 'done: 10 kimg' in third.stdout
    assert '--kimg 2' in calls(env)[2] and len(calls(env)) == 3
    status = run(env, work, '--status')
    assert 'kimg saved: 10 of 10' in status.stdout


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_resume_continues_the_same_run_when_gda_has_it(env, tmp_path):
    work = tmp_path / 'work'
    assert run(env, work).returncode == 3
    env['FAKE_RESUME'] = '1'
    assert run(env, work).returncode == 3
    assert calls(env)[1] == f'train --resume {work}/runs/00000-demo-source'
    assert run(env, work).returncode == 0
    assert len(calls(env)) == 3 and sorted(os.listdir(work / 'runs')) == ['00000-demo-source']


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_a_run_stopped_before_its_first_snapshot_is_set_aside(env, tmp_path):
    work = tmp_path / 'work'
    (work / 'runs' / '00000-demo-source').mkdir(parents=True)
    result = run(env, work)
    assert 'setting aside' in result.stdout
    assert (work / 'runs' / '00000-demo-source-empty').is_dir()
    assert '--source none' in calls(env)[0]
