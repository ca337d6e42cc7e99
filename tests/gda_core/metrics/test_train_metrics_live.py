"""`gda train --metrics` evaluates the live networks, with no reload of the snapshot it just wrote,
and appends the very records `gda metrics RUN_DIR` computes from that snapshot file."""

import glob
import json
import os

import torch
from click.testing import CliRunner

import gda_core.metrics
import stylegan2_ada
from gda_core.cli import main

TIMES = ('total_time', 'shared_time', 'timestamp')   # the only fields two evaluations may differ in


def _train(tiny, outdir, *args):
    data, source = tiny
    # adafm: weight reparams whose EMA twins G_ema renders with; rssa: a w-transform of the
    # source and the adapted pipeline (scs pairs). One snapshot, at the end.
    result = CliRunner().invoke(main, [
        'train', '--data', data, '--source', source, '--outdir', str(outdir), '--iters', '3',
        '--snap', '0', '--plugin', 'adafm', '--adafm-g-res', '8', '--plugin', 'rssa',
        '--rssa-lpips', 'off', '--rssa-invert-steps', '5', *args])
    assert result.exit_code == 0, result.output
    run_dir, = glob.glob(str(outdir / '*'))
    return run_dir


def _without_times(record):
    return {key: value for key, value in record.items() if key not in TIMES}


def test_train_metrics_are_the_metrics_of_the_snapshot_file(tiny, detector_files, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv('GDA_INCEPTION', detector_files['inception'])
    with monkeypatch.context() as patch:
        def reload(*args, **kwargs):
            raise AssertionError('gda train --metrics read its snapshot back')
        patch.setattr(gda_core.metrics, 'evaluate_network', reload)
        run_dir = _train(tiny, tmp_path / 'runs', '--metrics', 'kid,scs')
    during = {}
    for name in ('kid', 'scs'):
        record, = [json.loads(line) for line in open(os.path.join(run_dir, f'metric-{name}.jsonl'))]
        during[name] = record
    assert during['kid']['protocol']['plugins'] == ['adafm', 'rssa']
    assert during['scs']['protocol']['noise_mode'] == 'given pairs'   # through the plugin host

    result = CliRunner().invoke(main, ['metrics', run_dir, '--metrics', 'kid,scs', '--snapshots',
                                       'all', '--json'])
    assert result.exit_code == 0, result.output
    after = {record['metric']: record for record in map(json.loads, result.stdout.splitlines())}
    for name in ('kid', 'scs'):
        assert _without_times(during[name]) == _without_times(after[name])

    # Evaluating changed nothing in training: the same run without --metrics ends the same.
    plain = _train(tiny, tmp_path / 'plain')
    snapshots = [stylegan2_ada.load(os.path.join(folder, 'network-snapshot-000000.pkl'))
                 for folder in (run_dir, plain)]
    for key in ('G', 'G_ema', 'D'):
        for a, b in zip(*(s[key].state_dict().values() for s in snapshots)):
            assert torch.equal(a, b), key


def test_live_metrics_render_extension_modules_in_eval_mode():
    """--metrics renders plugin modules as an opened snapshot does (eval mode: no dropout), and
    gives every submodule its own mode back afterwards."""
    import torch
    from gda_core.training import eval_mode

    head = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    head[1].eval()                      # a submodule in a mode of its own
    with eval_mode([head]):
        assert not head.training and not head[0].training and not head[1].training
        x = torch.ones(1, 2)
        assert torch.equal(head(x), head(x))   # dropout off
    assert head.training and head[0].training and not head[1].training
