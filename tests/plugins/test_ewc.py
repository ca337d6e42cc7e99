"""ewc: the empirical Fisher (per-sample squared gradients) and the penalty by hand on toys, then
end to end: the Fisher is estimated once, saved in the snapshot, restored by load_state_dict, and
the logged penalty is 0 at the source and pulls G back towards it."""

import json

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main
from gda_core.run_context import RunContext
from gda_plugins import ewc
from gda_plugins.ewc.fisher import empirical_fisher, ewc_penalty

from gda_testkit import plugins as HP


def test_fisher_is_the_mean_of_per_sample_squared_gradients():
    # log-likelihood log sigmoid(theta . x): gradient (1 - sigmoid(theta . x)) x, = x / 2 at theta 0.
    theta = torch.zeros(2, requires_grad=True)
    x = torch.tensor([[1., 2.], [3., -4.], [0., 1.], [2., 2.]])
    fisher, = empirical_fisher(lambda b: torch.nn.functional.logsigmoid(x[2 * b:2 * b + 2] @ theta),
                               [theta], num_batches=2)
    # 0.25 * mean(x^2) = 0.25 * [(1 + 9 + 0 + 4) / 4, (4 + 16 + 1 + 4) / 4]
    assert torch.allclose(fisher, torch.tensor([0.875, 1.5625]))
    # Not the square of the accumulated gradient (the public port's mistake): (0.5 * mean x)^2.
    assert not torch.allclose(fisher, (0.5 * x.mean(0)).square())

    theta = torch.tensor([1.0, -1.0], requires_grad=True)
    fisher, = empirical_fisher(lambda b: torch.nn.functional.logsigmoid(x @ theta), [theta], 1)
    expected = ((1 - torch.sigmoid(x @ theta.detach()))[:, None] * x).square().mean(0)
    assert torch.allclose(fisher, expected)


def test_penalty_is_zero_at_the_source_and_quadratic_in_the_distance():
    source = [torch.tensor([1., 2.]), torch.tensor([[0.5]])]
    fisher = [torch.tensor([2., 0.]), torch.tensor([[4.]])]
    direction = [torch.tensor([1., 3.]), torch.tensor([[-1.]])]
    assert ewc_penalty(source, source, fisher, 10.0) == 0
    for t in (0.5, 1.0, 2.0):
        moved = [s + t * d for s, d in zip(source, direction)]
        # 10 * (2 * 1^2 + 0 * 3^2 + 4 * 1^2) * t^2 = 60 t^2
        assert torch.allclose(ewc_penalty(moved, source, fisher, 10.0), torch.tensor(60 * t * t))


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    data, source = tiny
    out = tmp_path_factory.mktemp('ewc')
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(out), '--plugin', 'ewc', '--ewc-samples', '6',
                                       '--ewc-lambda', '100', '--iters', '3', '--tick', '0.004',
                                       '--snap', '3'])
    assert result.exit_code == 0, result.output
    run_dir = next(out.iterdir())
    return dict(run_dir=run_dir, snapshot=HP.snapshot_path(run_dir), source=source)


def test_the_penalty_is_logged_zero_first_then_positive(trained):
    entries = [json.loads(line) for line in open(trained['run_dir'] / 'stats.jsonl')]
    values = [entry['losses']['Loss/G/ewc/ewc'] for entry in entries]
    assert len(values) == 3 and values[0] == 0 and values[1] > 0 and values[2] > 0
    assert entries[0]['losses']['ewc/fisher_mean'] > 0


def test_the_fisher_is_saved_and_restored_through_the_state_hooks(trained):
    data = stylegan2_ada.load(trained['snapshot'])
    state = data['gda']['plugins'][0]['state']
    G, G_s = data['G'], data['gda']['source_G']
    fisher = state['fisher']
    assert state['samples'] == 8     # 6 rounded up to whole batches of 4
    assert set(fisher) == {name for name, _ in G.named_parameters()}
    assert all(fisher[name].shape == param.shape for name, param in G.named_parameters())
    assert all(bool((value >= 0).all()) for value in fisher.values())
    assert sum(float(value.sum()) for value in fisher.values()) > 0

    run = RunContext('resume', G=G, D=data['D'], G_s=G_s)
    view = run.add_plugin('ewc', data['gda']['plugins'][0]['options'])
    ewc.load_state_dict(view, state)
    term, = ewc.g_loss_terms(view)
    source = dict(G_s.named_parameters())
    expected = 100 * sum(float((fisher[name] * (param - source[name]).square()).sum())
                         for name, param in G.named_parameters())
    assert expected > 0
    assert torch.allclose(term(None)['ewc'], torch.tensor(expected, dtype=torch.float32), rtol=1e-5)


def _drift(run_dir):
    data = stylegan2_ada.load(HP.snapshot_path(run_dir))
    fisher = data['gda']['plugins'][0]['state']['fisher']
    source = dict(data['gda']['source_G'].named_parameters())
    return sum(float((fisher[name] * (param - source[name]).square()).sum())
               for name, param in data['G'].named_parameters())


def test_a_large_lambda_keeps_g_closer_to_the_source(tiny, tmp_path):
    data, source = tiny
    drifts = []
    for weight in ('0', '1e9'):
        out = tmp_path / weight
        result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                           str(out), '--plugin', 'ewc', '--ewc-samples', '4',
                                           '--ewc-lambda', weight, '--iters', '4', '--snap', '1'])
        assert result.exit_code == 0, result.output
        drifts.append(_drift(next(out.iterdir())))
    assert drifts[1] < 0.5 * drifts[0]


@pytest.mark.parametrize('flags,message', [
    (['--source', 'none'], 'ewc keeps G near its source, so it needs a source network'),
    (['--ewc-samples', '0'], '--ewc-samples: must be positive, got 0'),
    (['--ewc-lambda', '-1'], '--ewc-lambda: must be 0 or more, got -1.0'),
])
def test_bad_input_is_a_one_line_user_error(tiny, tmp_path, flags, message):
    data, source = tiny
    args = ['train', '--data', data, '--source', source, '--outdir', str(tmp_path / 'runs'),
            '--plugin', 'ewc', '--iters', '1'] + flags
    if '--source' in flags:
        args = args[:4] + args[6:] + ['--cbase', '64', '--cmax', '16']
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'runs').exists()
