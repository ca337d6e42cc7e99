"""rssa end to end through `gda train` on tiny networks: SCC and DCC logged, the compression
applied to both pipelines in training and generation, its codes restored from the snapshot,
the official preset, shared anchors with patchd, export refused, clear errors."""

import json
import os
import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import composition
from gda_core.cli import main
from gda_core.generate import open_model, pairs, render, seed_latents
from gda_core.plugins import default_manager
from gda_core.run_context import RunContext
from gda_plugins.rssa import correlation
from gda_plugins.rssa.compression import LatentCompression, paper_alphas
from stylegan2_ada import detectors
from stylegan2_ada.errors import UserError

from gda_testkit import metric_standins as standins
from gda_testkit import plugins as HP

QUICK = ['--rssa-invert-steps', '2', '--rssa-lpips', 'off']


def train(tiny, outdir, *args, iters=2):
    data, source = tiny
    return CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                     str(outdir), '--iters', str(iters), '--tick', '0.004',
                                     '--plugin', 'rssa', *args])


def run_dir(outdir):
    return str(next(pathlib.Path(outdir).iterdir()))


def ticks(outdir):
    with open(os.path.join(run_dir(outdir), 'stats.jsonl')) as f:
        return [json.loads(line)['losses'] for line in f]


def snapshot(outdir):
    return stylegan2_ada.load(HP.snapshot_path(run_dir(outdir)))


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    """One rssa run of 2 iterations with the paper's settings, a tick per iteration."""
    outdir = tmp_path_factory.mktemp('rssa')
    result = train(tiny, outdir, *QUICK)
    assert result.exit_code == 0, result.output
    return outdir, result.output


def test_scc_and_dcc_are_logged_and_start_at_zero(trained):
    outdir, output = trained
    first, second = ticks(outdir)
    for name in ('Loss/G/rssa/scc', 'Loss/G/rssa/dcc'):
        # Iteration 0: G is still the source and both see the same compressed latents.
        assert first[name] == pytest.approx(0, abs=1e-6)
        assert second[name] > 1e-6
    assert 'rssa: inverted 6 target images' in output


def test_the_snapshot_holds_the_codes_and_alphas(trained):
    outdir, _ = trained
    record, = snapshot(outdir)['gda']['plugins']
    assert record['name'] == 'rssa' and record['options']['alphas'] == 'paper'
    assert record['state']['codes'].shape == (6, 6, 16)
    assert record['state']['alphas'].tolist() == pytest.approx(paper_alphas(6))


def test_generation_compresses_the_latents_of_both_generators(trained):
    outdir, _ = trained
    state = snapshot(outdir)['gda']['plugins'][0]['state']
    model = open_model(HP.snapshot_path(run_dir(outdir)), manager=default_manager(),
                       need_source=True)
    compression, = model.nets.w_transforms('generate', source=True)
    assert compression in model.nets.w_transforms('generate')          # target 'both': the same transform
    assert torch.equal(compression.codes, state['codes'])
    z = seed_latents([0, 1, 2], 16)
    source, adapted = pairs(model, z)
    ws = compression(model.G_s.mapping(z, None))
    assert torch.allclose(source, model.G_s.synthesis(ws, noise_mode='const'), atol=1e-6)
    uncompressed = model.G_s.synthesis(model.G_s.mapping(z, None), noise_mode='const')
    assert not torch.allclose(source, uncompressed, atol=1e-3)
    assert torch.allclose(adapted, render(model, z), atol=1e-6)


def test_gda_generate_pairs_and_export_refused(trained, tmp_path):
    outdir, _ = trained
    network = HP.snapshot_path(run_dir(outdir))
    result = CliRunner().invoke(main, ['generate', '--network', network, '--seeds', '0-1',
                                       '--pairs', '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / 'out')) == ['seed0000-pair.png', 'seed0001-pair.png']
    result = CliRunner().invoke(main, ['export', '--network', network, '--out',
                                       str(tmp_path / 'G.pt')])
    assert result.exit_code == 2
    assert "plugin 'rssa' cannot be folded into plain weights: the compression rescales" in \
        result.output


def resumed_run(outdir, **options):
    """A 'resume' run context rebuilt from the snapshot with the plugin's state hooks."""
    data = snapshot(outdir)
    record = data['gda']['plugins'][0]
    manager = default_manager()
    active = [composition.Active(manager.get('rssa'), dict(record['options'], **options), {}, {})]
    run = RunContext('resume', G=data['G'], D=data['D'], G_s=data['gda']['source_G'])
    run.add_plugin('rssa', active[0].options)
    ext = composition.build_extensions(manager, active, run)
    manager.call('rssa', 'load_state_dict', run=run.for_plugin('rssa'), state=record['state'])
    return ext, record['state']


def test_resume_restores_the_codes_through_the_state_hooks(trained):
    outdir, _ = trained
    ext, state = resumed_run(outdir)
    transform, = ext.w_transforms
    assert transform.target == 'both' and transform.modes == {'train', 'generate'}
    assert torch.equal(transform.module.codes, state['codes'])
    ws = torch.randn(2, 6, 16)
    fresh = LatentCompression(paper_alphas(6))
    fresh.set_codes(state['codes'])
    assert torch.equal(transform.module(ws), fresh(ws))
    with pytest.raises(UserError, match='alphas differ from the options'):
        resumed_run(outdir, alphas='0,0,0,0,0,0.5')


def test_the_official_preset_computes_dcc_every_sixth_iteration(tiny, tmp_path):
    result = train(tiny, tmp_path, *QUICK, '--rssa-preset', 'official')
    assert result.exit_code == 0, result.output
    first, second = ticks(tmp_path)
    assert 'Loss/G/rssa/dcc' in first and 'Loss/G/rssa/dcc' not in second
    # The official SCC reads 64..256 px maps only: a 16 px generator has none, and says so.
    assert 'Loss/G/rssa/scc' not in first and 'Loss/G/rssa/scc' not in second
    assert 'the official SCC uses maps of 64 to 256 px only' in result.output


def test_codes_from_gda_invert_skip_the_inversion_and_alphas_none_skip_compression(tiny, tmp_path):
    data, source = tiny
    codes = tmp_path / 'codes.npz'
    result = CliRunner().invoke(main, ['invert', '--network', source, '--data', data, '--out',
                                       str(codes), '--steps', '2', '--lpips', 'off'])
    assert result.exit_code == 0, result.output
    result = train(tiny, tmp_path / 'a', '--rssa-codes', str(codes), '--rssa-dcc-weight', '0',
                   iters=1)
    assert result.exit_code == 0, result.output
    assert 'inverting' not in result.output
    with np.load(codes) as saved:
        assert torch.equal(snapshot(tmp_path / 'a')['gda']['plugins'][0]['state']['codes'],
                           torch.from_numpy(saved['codes']))
    assert 'Loss/G/rssa/dcc' not in ticks(tmp_path / 'a')[0]

    result = train(tiny, tmp_path / 'b', '--rssa-alphas', 'none', iters=1)
    assert result.exit_code == 0, result.output
    assert 'inverting' not in result.output
    assert snapshot(tmp_path / 'b')['gda']['plugins'][0]['state'] == {}
    result = CliRunner().invoke(main, ['export', '--network',
                                       HP.snapshot_path(run_dir(tmp_path / 'b')), '--out',
                                       str(tmp_path / 'G.pt')])
    assert result.exit_code == 0, result.output   # nothing generation-time left to fold


def test_dcc_centres_on_the_anchors_patchd_uses(tiny, tmp_path, monkeypatch):
    centres = []
    sample = correlation.sample_neighbourhood

    def recording(center, *args):
        centres.append(center.clone())
        return sample(center, *args)
    monkeypatch.setattr(correlation, 'sample_neighbourhood', recording)
    result = train(tiny, tmp_path, *QUICK, '--plugin', 'patchd', '--rssa-dcc-center', 'anchors')
    assert result.exit_code == 0, result.output
    anchors = snapshot(tmp_path)['gda']['loop']['anchors']
    assert anchors.shape == (6, 16) and len(centres) == 2
    assert all(any(torch.equal(centre, anchor) for anchor in anchors) for centre in centres)


@pytest.mark.parametrize('args,message', [
    (['--rssa-alphas', '0.1,0.2'], '--rssa-alphas gives 2 strengths, but this generator has 6 W+ '
                                   'entries'),
    (['--rssa-alphas', 'most'], "--rssa-alphas: expected 'paper', 'church', 'none' or comma-"),
    (['--rssa-alphas', '0,0,0,0,0,2'], '--rssa-alphas: each strength must lie in [0, 1]'),
    (['--rssa-window', '4'], '--rssa-window: must be a positive odd number'),
    (['--rssa-codes', 'missing.npz'], 'cannot read the codes file missing.npz'),
    (['--rssa-codes', 'c.npz', '--rssa-alphas', 'none'], '--rssa-codes given with --rssa-alphas '
                                                          'none'),
    (['--rssa-preset', 'fast'], "'--rssa-preset': 'fast' is not one of 'paper', 'official'"),
])
def test_bad_options_are_one_line_errors(tiny, tmp_path, args, message):
    result = train(tiny, tmp_path / 'runs', '--rssa-lpips', 'off', *args, iters=1)
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'runs').exists()


def test_rssa_needs_a_source(tiny, tmp_path):
    data, _ = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', 'none', '--outdir',
                                       str(tmp_path), '--iters', '1', '--plugin', 'rssa',
                                       '--cbase', '128', '--cmax', '16', '--map', '2'])
    assert result.exit_code == 2
    assert "plugin 'rssa': rssa aligns the adapted generator with its source; give --source" in \
        result.output


def no_network(url, *args, **kwargs):
    raise UserError(f'cannot download {url} (offline)')


def test_the_inversion_at_the_start_uses_vgg16_or_warns_or_stops(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('GDA_VGG16', str(standins.save(standins.VGG16(), tmp_path / 'vgg16.pt')))
    result = train(tiny, tmp_path / 'with', '--rssa-invert-steps', '2', '--rssa-lpips', 'on',
                   iters=1)
    assert result.exit_code == 0 and 'Warning' not in result.output, result.output

    monkeypatch.delenv('GDA_VGG16')
    monkeypatch.setattr(detectors, 'download', no_network)
    result = train(tiny, tmp_path / 'auto', '--rssa-invert-steps', '2', iters=1)
    assert result.exit_code == 0, result.output
    assert 'Warning: rssa: inverting with MSE only' in result.output
    result = train(tiny, tmp_path / 'on', '--rssa-invert-steps', '2', '--rssa-lpips', 'on',
                   iters=1)
    assert result.exit_code == 2 and "plugin 'rssa': the detector vgg16.pt" in result.output
    assert 'Traceback' not in result.output


def test_resume_restores_the_codes_and_continues_exactly(tiny, tmp_path):
    assert train(tiny, tmp_path / 'straight', *QUICK, iters=4).exit_code == 0
    result = train(tiny, tmp_path / 'split', *QUICK, iters=2)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ['train', '--resume', run_dir(tmp_path / 'split'),
                                       '--iters', '4'])
    assert result.exit_code == 0, result.output
    assert 'inverting' not in result.output          # setup is not run again: the state is
    straight, split = snapshot(tmp_path / 'straight'), snapshot(tmp_path / 'split')
    assert torch.equal(split['gda']['plugins'][0]['state']['codes'],
                       straight['gda']['plugins'][0]['state']['codes'])
    for name, param in straight['G_ema'].named_parameters():
        assert torch.equal(param, dict(split['G_ema'].named_parameters())[name]), name
    assert [sorted(tick) for tick in ticks(tmp_path / 'split')] == \
        [sorted(tick) for tick in ticks(tmp_path / 'straight')]
