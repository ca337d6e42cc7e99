"""Multi-process training on CPU (gloo): `--gpus 2` and torchrun give one process's result.

The equivalence rule (docs/resume-and-processes.md): with the same total --batch and the default
--batch-gpu, K processes compute what one process computes, up to float rounding, except for
per-process random draws (noise inputs, augmentation, mixing cut-offs, path-length noise). The
runs here therefore use a source G without noise inputs, --cfg cifar (no style mixing, no path
length) and ADA at p = 0 with target 0, so that p rises once, from statistics of both processes.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import main
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.loss import global_path_length_penalty
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_step import DataSampler, rank_items

ITERS = 4


@pytest.fixture(autouse=True)
def one_thread_per_process(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('distributed')
    os.makedirs(root / 'data')
    rng = np.random.RandomState(0)
    import PIL.Image
    for i in range(8):
        PIL.Image.fromarray((rng.rand(16, 16, 3) * 255).astype(np.uint8)).save(
            root / 'data' / f'{i}.png')
    torch.manual_seed(0)
    common = dict(channel_base=128, channel_max=16, conv_clamp=256)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(common, use_noise=False))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, **common,
                      epilogue_kwargs=dict(mbstd_group_size=4))
    save_snapshot(str(root / 'source.pkl'), dict(G=G, D=D, G_ema=G))
    args = ['--data', root / 'data', '--source', root / 'source.pkl', '--cfg', 'cifar',
            '--batch', 8, '--iters', ITERS, '--tick', 0.016, '--snap', 1, '--aug', 'ada',
            '--p', 0, '--target', 0]
    args = [str(a) for a in args]
    result = CliRunner().invoke(main, ['train', *args, '--outdir', str(root / 'one')],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(root=root, args=args, one=run_dir_in(root / 'one'), G=G)


def run_dir_in(outdir):
    (name,) = os.listdir(outdir)
    return os.path.join(outdir, name)


def snapshot(run_dir):
    return torch.load(os.path.join(run_dir, 'network-snapshot-000000.pkl'), weights_only=True)


def stats(run_dir):
    with open(os.path.join(run_dir, 'stats.jsonl')) as file:
        return [json.loads(line) for line in file]


def assert_matches_one_process(setup, run_dir):
    one, many = snapshot(setup['one']), snapshot(run_dir)
    moved = 0.0
    for key in ('G', 'D', 'G_ema'):
        for name, value in one[key]['state_dict'].items():
            other = many[key]['state_dict'][name]
            assert torch.allclose(value, other, rtol=1e-4, atol=2e-5), (key, name)
            if key == 'G':
                moved = max(moved, float((value - setup['G'].state_dict()[name]).abs().max()))
    assert moved > 1e-3   # training moved the weights far beyond the tolerance
    loop_one, loop_many = one['gda']['loop'], many['gda']['loop']
    assert float(loop_one['augment_p']) > 0
    assert float(loop_many['augment_p']) == pytest.approx(float(loop_one['augment_p']), abs=1e-9)
    assert loop_many['sampler'] == loop_one['sampler']
    assert len(loop_many['ranks']) == 2 and len(loop_one['ranks']) == 1
    ticks_one, ticks_many = stats(setup['one']), stats(run_dir)
    assert [t['iteration'] for t in ticks_many] == [t['iteration'] for t in ticks_one] == [2, 4]
    for a, b in zip(ticks_one, ticks_many):
        assert set(a['losses']) == set(b['losses'])
        for name in a['losses']:
            assert b['losses'][name] == pytest.approx(a['losses'][name], rel=1e-4, abs=1e-5)


def test_two_spawned_processes_match_one(setup):
    outdir = setup['root'] / 'gpus2'
    result = CliRunner().invoke(main, ['train', *setup['args'], '--outdir', str(outdir),
                                       '--gpus', '2'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = run_dir_in(outdir)
    assert_matches_one_process(setup, run_dir)
    # Rank 0 alone wrote the run directory: one log, one line per tick.
    with open(os.path.join(run_dir, 'log.txt')) as file:
        log = file.read()
    assert log.count('Run directory:') == 1 and 'processes: 2' in log
    assert json.load(open(os.path.join(run_dir, 'training_options.json')))['gpus'] == 2
    setup['gpus2'] = run_dir
    setup['gpus2_snapshot'] = snapshot(run_dir)


@pytest.mark.slow
def test_two_process_run_resumes_bit_identically(setup):
    """2 processes for half the iterations, then --resume (again 2 processes, the run's own
    count): every process's RNG streams and ADA share continue, so the result is the straight
    2-process run's, bit for bit."""
    if 'gpus2_snapshot' not in setup:
        pytest.skip('needs the --gpus 2 run')
    outdir = setup['root'] / 'gpus2-half'
    args = [a if a != str(ITERS) else str(ITERS // 2) for a in setup['args']]
    result = CliRunner().invoke(main, ['train', *args, '--outdir', str(outdir), '--gpus', '2'],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = run_dir_in(outdir)
    result = CliRunner().invoke(main, ['train', '--resume', run_dir, '--iters', str(ITERS)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    straight, resumed = setup['gpus2_snapshot'], snapshot(run_dir)
    for key in ('G', 'D', 'G_ema'):
        for name, value in straight[key]['state_dict'].items():
            assert torch.equal(value, resumed[key]['state_dict'][name]), (key, name)
    for key in ('augment_p', 'pl_mean', 'iteration', 'sampler'):
        assert straight['gda']['loop'][key] == resumed['gda']['loop'][key]
    for a, b in zip(straight['gda']['loop']['ranks'], resumed['gda']['loop']['ranks']):
        assert torch.equal(a['rng']['torch'], b['rng']['torch'])


@pytest.mark.slow
def test_torchrun_runs_the_same_command(setup):
    """`torchrun --nproc_per_node 2 -m gda_core train ...`: the launcher's env:// rendezvous, the
    same result (slow only because it starts a third and fourth Python)."""
    outdir = setup['root'] / 'torchrun'
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', '-m', 'gda_core', 'train', *setup['args'],
               '--outdir', str(outdir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert_matches_one_process(setup, run_dir_in(outdir))


def test_a_two_process_run_resumes_in_one_process(setup):
    """Another process count: equivalent but not bit-identical streams, said in a warning; the
    ADA statistics of both processes carry over."""
    run_dir = setup.get('gpus2')
    if run_dir is None:
        pytest.skip('needs the --gpus 2 run')
    result = CliRunner().invoke(main, ['train', '--resume', run_dir, '--gpus', '1', '--iters',
                                       str(ITERS + 2)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert 'saved with 2 process(es) and resumes with 1' in result.output
    resumed = snapshot(run_dir)['gda']['loop']
    assert resumed['iteration'] == ITERS + 2 and len(resumed['ranks']) == 1
    assert [t['iteration'] for t in stats(run_dir)] == [2, 4, 6]


@pytest.mark.parametrize('args,env,message', [
    (['--gpus', '2', '--batch', '5'], {}, '--batch 5 does not split evenly over 2 processes'),
    (['--batch', '5'], dict(RANK='0', WORLD_SIZE='2'),
     '--batch 5 does not split evenly over 2 processes'),
    (['--gpus', '3'], dict(RANK='0', WORLD_SIZE='2'), '--gpus 3 under a launcher that started 2'),
])
def test_process_count_mistakes_are_one_line_errors(setup, monkeypatch, tmp_path, args, env,
                                                    message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    base = [a for a in setup['args'] if a not in ('--batch', '8')]
    result = CliRunner().invoke(main, ['train', *base, *args, '--outdir', str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and 'Traceback' not in result.output
    assert not os.listdir(tmp_path)


# -- the pieces -----------------------------------------------------------------------------------

def test_each_rank_takes_every_kth_item_of_the_global_batch():
    batch = DataSampler(10, seed=1).next_batch(8)
    shares = [rank_items(batch, rank, 2) for rank in (0, 1)]
    assert shares == [batch[0::2], batch[1::2]]
    assert sorted(shares[0] + shares[1]) == sorted(batch)
    z = torch.arange(8.0)[:, None].repeat(1, 3)
    assert torch.equal(rank_items(z, 1, 4)[:, 0], torch.tensor([1.0, 5.0]))


def test_path_length_penalty_across_processes_has_the_one_process_gradient():
    """Two processes with an all-reduced pl_mean: the mean of their gradients equals NVIDIA's
    one-process gradient over the whole batch (the pl_mean path included)."""
    torch.manual_seed(0)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    A = torch.randn(8, 5, dtype=torch.float64)
    pl_mean, decay = torch.tensor(0.3, dtype=torch.float64), 0.25

    def lengths():
        return (A @ theta).square() + 1.0

    # NVIDIA's code, one process holding all 8 lengths.
    l_all = lengths()
    new_one = pl_mean.lerp(l_all.mean(), decay)
    (grad_one,) = torch.autograd.grad((l_all - new_one).square().mean(), theta)

    total = torch.stack([lengths().sum().detach(), torch.tensor(8.0, dtype=torch.float64)])

    def all_reduce_sum(tensor):   # what torch.distributed would return: both processes' sums
        tensor.copy_(total)

    grads, naive = [], []
    for rank in (0, 1):
        mine = rank_items(lengths(), rank, 2)
        new_mean, penalty = global_path_length_penalty(mine, pl_mean, decay, all_reduce_sum)
        assert float(new_mean.detach()) == pytest.approx(float(new_one.detach()), rel=1e-12)
        assert torch.allclose(penalty, (mine - new_one).square())   # reported values unchanged
        grads.append(torch.autograd.grad(penalty.mean(), theta)[0])
        mine = rank_items(lengths(), rank, 2)
        naive.append(torch.autograd.grad((mine - new_mean.detach()).square().mean(), theta)[0])
    assert torch.allclose((grads[0] + grads[1]) / 2, grad_one, rtol=1e-10, atol=1e-12)
    # Without the coupling term the pl_mean path is lost: the test can tell.
    assert not torch.allclose((naive[0] + naive[1]) / 2, grad_one, rtol=1e-6)
