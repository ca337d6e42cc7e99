"""`gda train --resume RUN_DIR`: exact continuation through the real command, a real kill -9,
broken snapshots, and the user's mistakes.

The runs fine-tune a tiny source for 8 iterations (a tick every 2, a snapshot every tick) with a
plugin that has a trained EMA'd module and setup-computed state, ADA on from p = 0.2, lazy R1 and
path-length regularisation, so every piece of state the issue lists takes part.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import _Group, main
from gda_core.cmd_train import make_train_command
from gda_hooks import hookimpl
from stylegan2_ada.extensions import ParamGroup, WTransform

from gda_testkit import plugins as HP


COMMON = ['--batch', 4, '--tick', 0.008, '--snap', 1, '--aug', 'ada', '--p', 0.2,
          '--plugin', 'stateful']
N = 8   # iterations; a tick (and a snapshot) every 2


class Shift(torch.nn.Module):
    """A trained w offset, EMA'd into G_ema through its twin."""

    def __init__(self):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros([HP.Z_DIM]))

    def forward(self, ws, it):
        return ws + self.shift


class Stateful:
    """A plugin whose setup draws a target vector (only in fresh runs): resume must bring it back
    through state_dict/load_state_dict, or the loss term below cannot run."""

    @hookimpl
    def param_groups(self, run):
        run.ns.shift = Shift()
        return [ParamGroup('shift', run.ns.shift, ema=True)]

    @hookimpl
    def w_transforms(self, run):
        return [WTransform('shift', run.ns.shift)]

    @hookimpl
    def g_loss_terms(self, run):
        return [lambda it: {'pull': 0.1 * (run.ns.shift.shift - run.ns.target).square().sum()}]

    @hookimpl
    def setup(self, run):
        run.ns.target = torch.randn([HP.Z_DIM])

    @hookimpl
    def state_dict(self, run):
        return dict(target=run.ns.target)

    @hookimpl
    def load_state_dict(self, run, state):
        run.ns.target = state['target'].clone()


def gda(manager, *args, catch_exceptions=False):
    """`gda train ARGS` with `manager`'s plugins, as the command line runs it (UserError: exit 2)."""
    group = _Group(commands={'train': make_train_command(manager)})
    return CliRunner().invoke(group, ['train'] + [str(a) for a in args],
                              catch_exceptions=catch_exceptions)


def snapshot(run_dir):
    return torch.load(os.path.join(run_dir, 'network-snapshot-000000.pkl'), weights_only=True)


def assert_same_state(a, b, where='snapshot'):
    """Bit-identical nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same_state(a[key], b[key], f'{where}[{key!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f'{where}[{index}]')
    else:
        assert a == b, (where, a, b)


def assert_same_training(straight, resumed):
    """Weights, optimisers, ADA, pl_mean, sampler, plugin modules, twins and state agree."""
    for key in ('G', 'D', 'G_ema'):
        assert_same_state(straight[key]['state_dict'], resumed[key]['state_dict'], key)
    a, b = straight['gda']['loop'], resumed['gda']['loop']
    for key in ('cur_nimg', 'iteration', 'tick', 'sampler', 'optimizers', 'ada', 'augment_p',
                'pl_mean', 'modules', 'twins', 'ranks'):
        assert_same_state(a[key], b[key], f'loop[{key!r}]')
    assert_same_state(straight['gda']['plugins'], resumed['gda']['plugins'], 'plugins')


def run_dir_in(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)


def stats(run_dir):
    with open(os.path.join(run_dir, 'stats.jsonl')) as file:
        return [json.loads(line) for line in file]


@pytest.fixture(scope='module')
def runs(tiny, tmp_path_factory):
    """The straight run of N iterations, and N/2 + resume (a pristine copy of the half run too)."""
    data, source = tiny
    root = tmp_path_factory.mktemp('resume')
    manager = HP.manager(('stateful', Stateful()))
    base = ['--data', data, '--source', source, *COMMON]
    result = gda(manager, *base, '--outdir', root / 'straight', '--iters', N)
    assert result.exit_code == 0, result.output
    result = gda(manager, *base, '--outdir', root / 'half', '--iters', N // 2)
    assert result.exit_code == 0, result.output
    half = run_dir_in(root / 'half')
    pristine = str(root / 'pristine')
    shutil.copytree(half, pristine)
    resumed = gda(manager, '--resume', half, '--iters', N)
    return dict(straight=run_dir_in(root / 'straight'), half=half, pristine=pristine,
                output=resumed.output, exit_code=resumed.exit_code, manager=manager, data=data,
                source=source)


def test_half_stop_resume_is_bit_identical_to_straight(runs):
    assert runs['exit_code'] == 0, runs['output']
    straight, resumed = snapshot(runs['straight']), snapshot(runs['half'])
    assert resumed['gda']['loop']['iteration'] == N
    assert_same_training(straight, resumed)
    # The run really moved what resume must carry: ADA p and the plugin's module and twin.
    assert float(resumed['gda']['loop']['augment_p']) != pytest.approx(0.2, abs=1e-9)
    assert resumed['gda']['loop']['ada']['batch_idx'] == N
    shift = resumed['gda']['loop']['modules']['param_groups/stateful/shift']['shift']
    assert shift.abs().sum() > 0 and float(resumed['gda']['loop']['pl_mean']) > 0


def test_resume_appends_to_the_same_run_directory(runs):
    assert 'Resuming' in runs['output'] and 'iteration 4' in runs['output']
    half_stats, straight_stats = stats(runs['half']), stats(runs['straight'])
    assert [t['iteration'] for t in half_stats] == [2, 4, 6, 8]
    assert [t['tick'] for t in half_stats] == [1, 2, 3, 4]
    # Same losses tick by tick: the resumed half trained on the very same batches.
    assert [t['losses'] for t in half_stats] == [t['losses'] for t in straight_stats]
    with open(os.path.join(runs['half'], 'log.txt')) as file:
        log = file.read()
    assert log.count('Run directory:') == 1 and log.count('Resuming') == 1
    assert log.index('tick 2') < log.index('Resuming') < log.index('tick 3')
    options = json.load(open(os.path.join(runs['half'], 'training_options.json')))
    assert options['options']['iters'] == N
    assert options['option_origin']['iters'] == 'command line (--resume)'
    assert options['resumes'] == [dict(snapshot='network-snapshot-000000.pkl', iteration=4,
                                       kimg=0.016, processes=1, changed={'iters': N})]


@pytest.mark.parametrize('damage', ['truncated', 'flipped byte'])
def test_a_broken_newest_snapshot_is_skipped_and_the_previous_one_resumes(runs, tmp_path,
                                                                          damage):
    """What a kill during a snapshot write could leave (had the write not been atomic): a partial
    temporary file and a damaged newest snapshot, plus a stats line cut short."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(runs['pristine'], run_dir)
    good = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    with open(good, 'rb') as file:
        data = bytearray(file.read())
    if damage == 'truncated':
        broken = data[:len(data) // 2]
    else:
        broken = bytearray(data)
        broken[len(data) // 2] ^= 0xFF
    newest = os.path.join(run_dir, 'network-snapshot-000001.pkl')
    with open(newest, 'wb') as file:
        file.write(broken)
    temp = os.path.join(run_dir, '.network-snapshot-000001.pkl.k3x9q_.tmp')
    with open(temp, 'wb') as file:
        file.write(data[:1000])
    with open(os.path.join(run_dir, 'stats.jsonl'), 'a') as file:
        file.write('{"tick": 3, "kimg": 0.0')

    result = gda(runs['manager'], '--resume', run_dir, '--iters', N)
    assert result.exit_code == 0, result.output
    assert f'Warning: skipping {newest}' in result.output
    assert_same_training(snapshot(runs['straight']), snapshot(run_dir))
    assert not os.path.exists(temp) and not os.path.exists(newest)
    assert os.path.exists(newest + '.corrupt')
    assert [t['iteration'] for t in stats(run_dir)] == [2, 4, 6, 8]


def test_killed_run_resumes_exactly(tiny, tmp_path):
    """kill -9 of a real `gda train` process mid-run, then --resume: nothing is lost beyond the
    last snapshot and the result is the uninterrupted run's."""
    data, source = tiny
    args = ['--data', data, '--source', source, '--batch', 4, '--tick', 0.008, '--snap', 1,
            '--aug', 'ada', '--p', 0.2]
    prelude = ('import sys, torch; torch.set_num_threads(1); torch.backends.mkldnn.enabled = '
               'False; from gda_core.cli import main; main()')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    process = subprocess.Popen([sys.executable, '-c', prelude, 'train', *map(str, args),
                                '--outdir', str(tmp_path / 'killed'), '--iters', '100000'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        snapshot_file = None
        while time.time() < deadline and process.poll() is None:
            folders = os.listdir(tmp_path / 'killed') if os.path.isdir(tmp_path / 'killed') else []
            if folders and os.path.exists(os.path.join(tmp_path / 'killed', folders[0],
                                                       'network-snapshot-000000.pkl')):
                snapshot_file = True
                break
            time.sleep(0.05)
        assert snapshot_file, process.stderr.read().decode() if process.poll() else 'no snapshot'
        time.sleep(0.3)   # mid-run: past the snapshot, maybe inside the next one
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run_dir = run_dir_in(tmp_path / 'killed')
    saved = snapshot(run_dir)['gda']['loop']['iteration']
    goal = saved + 4
    result = CliRunner().invoke(main, ['train', '--resume', run_dir, '--iters', str(goal)])
    assert result.exit_code == 0, result.output
    straight = CliRunner().invoke(main, ['train', *map(str, args), '--outdir',
                                         str(tmp_path / 'straight'), '--iters', str(goal)])
    assert straight.exit_code == 0, straight.output
    assert_same_training(snapshot(run_dir_in(tmp_path / 'straight')), snapshot(run_dir))
    ticks = [t['iteration'] for t in stats(run_dir)]
    assert ticks == list(range(2, goal + 1, 2))


@pytest.mark.parametrize('make,args,message', [
    (None, ['--resume', 'MISSING'], 'no such run directory'),
    ('empty', ['--resume', 'RUN'], 'not a gda run directory'),
    ('no snapshot', ['--resume', 'RUN'], 'no network-snapshot-*.pkl there'),
    ('all broken', ['--resume', 'RUN'], 'no valid snapshot (network-snapshot-000000.pkl'),
    ('copy', ['--resume', 'RUN', '--gamma', '5'], "--gamma 5.0 (the run has 10.0)"),
    ('copy', ['--resume', 'RUN', '--batch', '8', '--plugin', 'stateful'], '--batch 8 (the run has 4)'),
    ('copy', ['--resume', 'RUN', '--outdir', 'elsewhere'], '--outdir (a resumed run stays in'),
    ('copy', ['--resume', 'RUN', '--plugin', 'freezed'], "--plugin freezed (the run has ['stateful'])"),
])
def test_resume_mistakes_are_one_line_errors(runs, tmp_path, make, args, message):
    run_dir = tmp_path / 'run'
    if make == 'empty':
        os.makedirs(run_dir)
    elif make is not None:
        shutil.copytree(runs['pristine'], run_dir)
        snap = run_dir / 'network-snapshot-000000.pkl'
        if make == 'no snapshot':
            os.remove(snap)
        elif make == 'all broken':
            snap.write_bytes(snap.read_bytes()[:5000])
    args = [str(run_dir) if a == 'RUN' else str(tmp_path / a) if a == 'MISSING' else a
            for a in args]
    result = gda(runs['manager'], *args, catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert message in result.output and 'Traceback' not in result.output
    assert len(result.output.strip().splitlines()[-1]) > 20


def test_repeating_the_runs_own_options_is_allowed(runs, tmp_path):
    run_dir = str(tmp_path / 'run')
    shutil.copytree(runs['pristine'], run_dir)
    result = gda(runs['manager'], '--resume', run_dir, '--data', runs['data'], '--batch', 4,
                 '--plugin', 'stateful', '--p', 0.2, '--kimg', 0.024, '--dry-run')
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config['options']['kimg'] == 0.024 and config['options']['iters'] is None
    assert config['options']['gamma'] == 10.0 and config['plugins'][0]['name'] == 'stateful'


def tree(run_dir):
    """{name: (bytes, mtime)} of every file: what 'changes nothing' compares."""
    return {name: (open(os.path.join(run_dir, name), 'rb').read(),
                   os.stat(os.path.join(run_dir, name)).st_mtime_ns)
            for name in sorted(os.listdir(run_dir))}


def test_resuming_a_finished_run_changes_nothing(runs, tmp_path):
    run_dir = str(tmp_path / 'run')
    shutil.copytree(runs['straight'], run_dir)
    before = tree(run_dir)
    result = gda(runs['manager'], '--resume', run_dir)
    assert result.exit_code == 0, result.output
    assert 'already reached its stop condition' in result.output and 'nothing was changed' in result.output
    assert tree(run_dir) == before


def test_an_unreadable_snapshot_is_set_aside_only_when_training_goes_on(runs, tmp_path):
    """A no-op resume leaves the broken file where it is (and says what would happen); a resume
    that trains renames it *.corrupt, next to one set aside before."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(runs['straight'], run_dir)
    newest = os.path.join(run_dir, 'network-snapshot-000001.pkl')
    with open(newest, 'wb') as file:
        file.write(b'PK\x03\x04 not a whole archive')
    result = gda(runs['manager'], '--resume', run_dir)
    assert result.exit_code == 0, result.output
    assert (f'Warning: skipping {newest}' in result.output
            and 'if training goes on, it is renamed network-snapshot-000001.pkl.corrupt' in result.output)
    assert os.path.exists(newest) and not os.path.exists(newest + '.corrupt')

    with open(newest + '.corrupt', 'wb') as file:
        file.write(b'set aside by an earlier resume')
    result = gda(runs['manager'], '--resume', run_dir, '--iters', N + 2)
    assert result.exit_code == 0, result.output
    assert not os.path.exists(newest) and open(newest + '.corrupt', 'rb').read().startswith(b'set aside')
    assert open(newest + '.corrupt.1', 'rb').read().startswith(b'PK\x03\x04 not')


def test_when_no_snapshot_is_readable_they_are_left_in_place(runs, tmp_path):
    run_dir = tmp_path / 'run'
    shutil.copytree(runs['pristine'], run_dir)
    snap = run_dir / 'network-snapshot-000000.pkl'
    snap.write_bytes(snap.read_bytes()[:5000])
    result = gda(runs['manager'], '--resume', run_dir, catch_exceptions=True)
    assert result.exit_code == 2 and 'cannot be read, left as they are' in result.output
    assert sorted(os.listdir(run_dir)) == sorted(os.listdir(runs['pristine']))


def test_a_full_disk_at_a_snapshot_is_one_line_and_the_previous_snapshot_resumes(
        runs, tmp_path, small_disk, monkeypatch):
    """The second snapshot does not fit: one line saying so, where and how much it needs; the
    first survives whole and --resume continues from it."""
    size = os.path.getsize(os.path.join(runs['straight'], 'network-snapshot-000000.pkl'))
    small_disk(int(size * 1.5))
    outdir = tmp_path / 'runs'
    result = gda(runs['manager'], '--data', runs['data'], '--source', runs['source'], *COMMON,
                 '--outdir', outdir, '--iters', 4, catch_exceptions=True)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and 'Traceback' not in result.output, result.output
    run_dir = run_dir_in(outdir)
    target = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    assert lines[-1].startswith(f'Error: the disk is full: no space left on device writing {target} (')
    needs = float(re.search(r'it needs about ([\d.]+) MB', lines[-1]).group(1)) * 2 ** 20
    assert abs(needs - size) < 0.02 * size, (needs, size)
    assert not [name for name in os.listdir(run_dir) if name.endswith('.tmp')]
    assert snapshot(run_dir)['gda']['loop']['iteration'] == 2
    monkeypatch.undo()
    result = gda(runs['manager'], '--resume', run_dir, '--iters', 4)
    assert result.exit_code == 0, result.output
    assert snapshot(run_dir)['gda']['loop']['iteration'] == 4


def test_cpu_bf16_is_recorded_and_logged_and_a_resume_may_turn_it_off(tiny, tmp_path):
    """--cpu-bf16 changes the arithmetic of a run from scratch (NVIDIA's fp16 blocks), is kept in
    training_options.json, and, like --device, may change when the run is resumed."""
    data, _ = tiny
    manager = HP.manager()
    scratch = ['--data', data, '--source', 'none', '--cfg', 'cifar', '--cbase', 256, '--cmax', 16,
               '--zdim', 16, '--map', 1, '--batch', 4, '--tick', 0.008, '--snap', 1]
    bf16 = gda(manager, *scratch, '--outdir', tmp_path / 'bf16', '--iters', 2, '--cpu-bf16')
    fp32 = gda(manager, *scratch, '--outdir', tmp_path / 'fp32', '--iters', 2)
    assert bf16.exit_code == 0 and fp32.exit_code == 0, bf16.output + fp32.output
    assert 'device: cpu (bfloat16 blocks)' in bf16.output
    assert 'device: cpu ' in fp32.output and 'bfloat16' not in fp32.output
    run_dir = run_dir_in(tmp_path / 'bf16')
    with open(os.path.join(run_dir, 'training_options.json')) as file:
        assert json.load(file)['options']['cpu_bf16'] is True
    a, b = snapshot(run_dir), snapshot(run_dir_in(tmp_path / 'fp32'))
    assert not torch.equal(a['G']['state_dict']['synthesis.b16.conv1.weight'],
                           b['G']['state_dict']['synthesis.b16.conv1.weight'])
    resumed = gda(manager, '--resume', run_dir, '--iters', 4, '--no-cpu-bf16')
    assert resumed.exit_code == 0, resumed.output
    assert 'device: cpu ' in resumed.output and 'bfloat16' not in resumed.output
    assert stats(run_dir)[-1]['iteration'] == 4
