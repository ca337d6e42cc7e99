"""benchmarks/adaptation.py: every configuration trains a few iterations through `gda train` on a
tiny source and gets every metric (so no method silently breaks), and the planning, budget and
speed bookkeeping by hand."""

import json
import math
import pathlib
import warnings

import pytest
import torch
from click.testing import CliRunner

from gda_core.plugins import default_manager

import adaptation as AD  # by name: see conftest.py
import adaptation_report as REPORT
import adaptation_runs as RUNS
from gda_testkit import plugins as HP


class StandInVGG(torch.nn.Module):
    """Plays NVIDIA's vgg16.pt (features and LPIPS features), so disp and rssa's LPIPS run."""

    def forward(self, x, return_features: bool = False, return_lpips: bool = False,
                resize_images: bool = True):
        pooled = torch.nn.functional.avg_pool2d(x / 255, 4)
        if return_lpips:
            return pooled / (pooled.square().sum(1, keepdim=True) + 1e-10).sqrt()
        return pooled.flatten(1)


def protocol(root, targets=6):
    """A tiny source, target and held-out set under root, and the benchmark arguments that name
    them with the smallest metric budgets."""
    source = HP.write_source(root / 'source.pkl')
    target = HP.write_images(root / 'target', count=targets)
    heldout = HP.write_images(root / 'heldout', count=8, seed=1)
    return ['--source', source, '--target', target, '--heldout', heldout, '--seeds', '0',
            '--num-gen', '12', '--num-pairs', '4', '--detector-steps', '2', '--in-process',
            '--workdir', str(root / 'work'), '--out', str(root / 'out')]


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """One shortened benchmark over every configuration (2 iterations each), run once."""
    root = tmp_path_factory.mktemp('bench')
    vgg = root / 'vgg16-standin.pt'
    with warnings.catch_warnings():   # torch 2.13 deprecates TorchScript; NVIDIA's files are TorchScript
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.save(torch.jit.script(StandInVGG()), str(vgg))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('GDA_CACHE_DIR', str(root / 'cache'))
        mp.setenv('GDA_VGG16', str(vgg))
        result = CliRunner().invoke(AD.main, protocol(root) + ['--iters', '2', '--smoke'])
    return root, result


def test_every_configuration_trains_and_gets_every_metric(smoke):
    root, result = smoke
    assert result.exit_code == 0, result.output
    data = json.loads((root / 'out' / 'adaptation.json').read_text())
    rows = {row['config']: row for row in data['rows']}
    assert list(rows) == AD.CONFIG_NAMES
    installed = set(default_manager().plugins)
    for name, row in rows.items():
        config = next(c for c in AD.CONFIGS if c.name == name)
        if not set(config.plugins) <= installed:
            assert row['status'].startswith('skipped: plugin'), row
            continue
        assert row['status'] == 'ok', (name, row['status'])
        for key in ('kid', 'fid', 'intra_lpips', 'scs', 'sec_per_kimg'):
            assert math.isfinite(row[key]), (name, key, row)
        assert 0 <= row['scs'] <= 1 and row['intra_lpips'] >= 0
    # Same budget and seed for all: 2 iterations of batch 4 each, seed 0.
    for run in data['runs']:
        assert '--iters 2 --kimg 0.008 --batch 4 --seed 0' in run['command'], run['command']
        assert pathlib.Path(run['snapshot']).name == 'network-snapshot-000000.pkl'
        assert json.loads((pathlib.Path(run['snapshot']).parent / 'stats.jsonl').read_text()
                          .splitlines()[-1])['iteration'] == 2
    # rssa rows share one inversion.
    assert [record['status'] for record in data['rssa_inversion'].values()] == ['ok']
    assert all('--rssa-codes' in run['command'] for run in data['runs'] if 'rssa' in run['plugins'])
    assert data['reference']['source']['scs'] == 1.0 and math.isfinite(data['reference']['source']['kid'])
    markdown = (root / 'out' / 'adaptation.md').read_text()
    assert 'Substitute detector' in markdown and '| idc+patchd |' in markdown
    assert '--iters 2' in data['command'] and '--smoke' in data['command']
    # The one-shot rows train on the first target image only.
    one_shot = next(run for run in data['runs'] if run['config'] == 'baseline-1shot')
    assert one_shot['shots'] == 1 and '--data ' + str(root / 'work' / 'target-1shot') in one_shot['command']
    assert len(list((root / 'work' / 'target-1shot').iterdir())) == 1
    # Their curves start from the source clustered by that one shot, not by all the shots.
    own = data['reference']['source_by_config']
    assert set(own) == {'baseline-1shot', 'genda-1shot'} and own['baseline-1shot'] == own['genda-1shot']
    assert own['baseline-1shot']['intra_lpips_clusters'] == 1
    assert data['reference']['source']['intra_lpips_clusters'] > 1
    assert 'clustered by the shots of baseline-1shot' in markdown


@pytest.fixture(scope='module')
def curves_run(tmp_path_factory):
    """baseline for 4 iterations scored every 2, with paired sets (correspondence); run twice."""
    root = tmp_path_factory.mktemp('curves')
    paired_a, paired_b = HP.write_images(root / 'pa', count=6, seed=2), HP.write_images(root / 'pb', count=6, seed=3)
    args = protocol(root, targets=4) + ['--configs', 'baseline', '--iters', '4', '--eval-every', '2',
                                        '--pairs', f'{paired_a},{paired_b}', '--source-data', paired_a]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('GDA_CACHE_DIR', str(root / 'cache'))
        first = CliRunner().invoke(AD.main, args)
        again = CliRunner().invoke(AD.main, args)
    return root, first, again


def test_runs_are_scored_along_training_with_correspondence_and_curves(curves_run):
    root, first, _ = curves_run
    assert first.exit_code == 0, first.output
    data = json.loads((root / 'out' / 'adaptation.json').read_text())
    run = data['runs'][0]
    assert [entry['iteration'] for entry in run['evals']] == [2, 4]
    assert [segment['to_iteration'] for segment in run['segments']] == [2, 4]
    for entry in run['evals']:
        assert 0 <= entry['correspondence'] <= 1 and math.isfinite(entry['kid'])
    row = data['rows'][0]
    assert [point for point, _ in row['curves']['kid']] == [2, 4]
    assert row['kid'] == pytest.approx(run['evals'][-1]['kid']) and 'correspondence' in row
    retrieval = data['detector']['retrieval']
    assert retrieval['pairs'] == 6 and 0 <= retrieval['target_to_source_top1'] <= 1
    content = data['content_encoder']
    assert content['pairs_trained'] == 3 and content['retrieval_unseen']['pairs'] == 3
    assert 0 <= data['reference']['source']['correspondence'] <= 1
    assert math.isfinite(data['reference']['source_vs_source_domain']['kid'])
    gap = data['reference']['source_domain']   # --source-data's real images vs the held-out set
    assert math.isfinite(gap['kid']) and math.isfinite(gap['fid'])
    assert f"held-out images: KID {gap['kid']:.3f}" in (root / 'out' / 'adaptation.md').read_text()
    assert data['detector']['training_images'] == dict(target=4, heldout=8, source_images=6)
    for name in data['curves'].values():
        assert (root / 'out' / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert set(data['curves']) >= {'kid', 'intra_lpips', 'scs', 'correspondence'}
    # Only the newest snapshot is kept (the rest were scored and removed).
    assert len(list(pathlib.Path(run['snapshot']).parent.glob('network-snapshot-*.pkl'))) == 1
    assert '| corresp. ↑ |' in (root / 'out' / 'adaptation.md').read_text()


def test_a_second_invocation_reuses_finished_runs(curves_run):
    root, first, again = curves_run
    assert again.exit_code == 0, again.output
    data = json.loads((root / 'out' / 'adaptation.json').read_text())
    record = json.loads((root / 'work' / 'runs' / 'baseline-seed0' / 'record.json').read_text())
    assert data['runs'][0]['evals'] == record['evals'] and len(record['evals']) == 2
    log = (root / 'work' / 'runs' / 'baseline-seed0' / 'train.log').read_text()
    assert log.count('Run directory:') == 1     # nothing trained again


def test_quick_is_the_headline_methods_one_seed_and_a_shorter_budget():
    assert AD.budget(True, None, None, None, None) == ('baseline,idc+patchd,rssa+patchd,genda', '0', 500, 125)
    assert AD.budget(False, None, None, None, None) == ('all', '0,1,2', 1000, 250)
    assert AD.budget(True, 'idc', '3', 50, 10) == ('idc', '3', 50, 10)    # what is given wins
    assert {config.name for config in AD.parse_configs(AD.QUICK_CONFIGS)} <= set(AD.CONFIG_NAMES)


def test_eval_points_end_at_the_budget():
    assert RUNS.eval_points(1000, 250) == [250, 500, 750, 1000]
    assert RUNS.eval_points(600, 250) == [250, 500, 600]
    assert RUNS.eval_points(2, 250) == [2]


def test_every_installed_gda_plugin_is_benchmarked():
    """A new built-in method plugin must get a row (and so this smoke test)."""
    ours = {name for name, plugin in default_manager().plugins.items() if plugin.distribution == 'gda'}
    covered = {name for config in AD.CONFIGS for name in config.plugins}
    assert ours <= covered, sorted(ours - covered)


def test_planning_skips_missing_plugins_and_marks_missing_weights():
    configs = AD.parse_configs('baseline,disp,idc+patchd,rssa,foo')
    planned = AD.plan(configs, installed={'disp', 'idc', 'patchd', 'rssa'}, broken={},
                      available=lambda name: False)
    status = {config.name: (state, notes) for config, state, notes in planned}
    assert status['baseline'][0] == 'run' and status['idc+patchd'][0] == 'run'
    assert status['disp'][0] == 'not run: needs vgg16.pt (VGG16), not available offline'
    assert status['foo'][0] == 'skipped: plugin foo is not installed'
    assert status['rssa'][0] == 'run' and 'with MSE only (vgg16.pt unavailable)' in status['rssa'][1][-1]
    planned = AD.plan(AD.parse_configs('disp'), installed=set(), broken={'disp': 'ImportError: x'},
                      available=lambda name: True)
    assert planned[0][1] == 'skipped: disp failed to load (ImportError: x)'
    assert AD.plan(AD.parse_configs('disp'), {'disp'}, {}, lambda name: True)[0][1] == 'run'


@pytest.mark.parametrize('text', ['idc+', '+patchd', 'baseline+idc'])
def test_unreadable_configs_are_a_one_line_usage_error(text, tmp_path):
    result = CliRunner().invoke(AD.main, ['--configs', text, '--source', __file__])
    assert result.exit_code == 2
    assert 'Invalid value for --configs' in result.output and 'Traceback' not in result.output


def test_loop_speed_leaves_out_the_first_tick(tmp_path):
    stats = tmp_path / 'stats.jsonl'
    entries = [dict(tick=1, kimg=0.4, iteration=100, time=50.0),
               dict(tick=2, kimg=0.8, iteration=200, time=70.0),
               dict(tick=3, kimg=1.2, iteration=300, time=90.0)]
    stats.write_text('\n'.join(json.dumps(e) for e in entries) + '\n')
    assert RUNS.loop_speed(stats) == pytest.approx((40 / 0.8, 40 / 200))
    stats.write_text(json.dumps(entries[0]) + '\n')
    assert RUNS.loop_speed(stats) == pytest.approx((50 / 0.4, 50 / 100))
    # Trained in two segments (--resume restarts the clock): each process's first tick is left out.
    resumed = entries + [dict(tick=4, kimg=1.6, iteration=400, time=60.0),
                         dict(tick=5, kimg=2.0, iteration=500, time=90.0)]
    stats.write_text('\n'.join(json.dumps(e) for e in resumed) + '\n')
    assert RUNS.loop_speed(stats) == pytest.approx(((20 + 20 + 30) / 1.2, 70 / 300))


def test_metrics_condition_a_disp_snapshot_on_its_priors_not_on_labels(smoke):
    """gda_core.metrics renders a snapshot whose plugin conditions G (disp) with the plugin's own
    c, per image as `gda generate` seeds it; the label-less reference set is no obstacle."""
    from gda_core.generate import open_model
    from gda_core.metrics.evaluation import Evaluation
    from gda_core.metrics.pairs import plugin_pipelines
    root, result = smoke
    data = json.loads((root / 'out' / 'adaptation.json').read_text())
    run = next(r for r in data['runs'] if r['config'] == 'disp')
    generate, _ = plugin_pipelines(run['snapshot'], torch.device('cpu'))
    model = open_model(run['snapshot'])
    ev = Evaluation(generate, model.G.z_dim, model.G.c_dim, data=str(root / 'heldout'), seed=7)
    c = ev._conditions(3, 6)
    assert c.shape == (3, model.G.c_dim) and model.G.c_dim > 0
    assert torch.equal(c, torch.cat([model.default_c(1, 7 * 1_000_003 + i) for i in (3, 4, 5)]))
    assert not torch.equal(c[0], c[1])


def test_rows_not_yet_run_say_so_in_a_partial_table():
    """The tables are rewritten after every run: a row whose run has not happened yet must not
    read as 'ok' with empty numbers."""
    planned = AD.plan(AD.parse_configs('baseline,idc'), {'idc'}, {}, lambda name: True)
    done = dict(config='baseline', status='ok', train=dict(sec_per_kimg=5.0),
                evals=[dict(iteration=250, kid=2.0), dict(iteration=500, kid=1.0)])
    rows = {row['config']: row for row in REPORT.summarise([done], planned, at=500)}
    assert rows['baseline']['status'] == 'ok' and rows['baseline']['kid'] == 1.0
    assert rows['baseline']['curves']['kid'] == [[250, 2.0], [500, 1.0]]
    assert rows['idc']['status'].startswith('not finished') and 'kid' not in rows['idc']


def test_a_row_with_plugin_options_passes_them_and_records_them_in_its_protocol():
    deep, = AD.parse_configs('freezed-b16')
    plain, = AD.parse_configs('freezed')
    args = RUNS.train_args(deep, 'source.pkl', 'shots', 'out', 10, 0, None, False)
    assert args[args.index('--plugin'):] == ['--plugin', 'freezed', '--freezed-layers', '5']
    opts = dict(iters=10, eval_every=5, source_sha256='x', data_of=lambda config: 'shots',
                smoke=False, device=None, num_gen=2, num_pairs=2, detector_key='d')
    assert RUNS.run_protocol(deep, 0, opts)['options'] == ['--freezed-layers', '5']
    assert 'options' not in RUNS.run_protocol(plain, 0, opts)   # older runs' protocols still match
