"""`gda generate`: the freezed + diffaugment run end to end, --pairs, and the snapshot's plugins."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import generate
from gda_core.cli import main
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.image_grid import to_uint8

from gda_testkit import plugins as HP


def gda(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope='module')
def adapted(tiny, tmp_path_factory):
    """`gda train --plugin freezed --plugin diffaugment` on the tiny source (the CLI, entry points)."""
    data, source = tiny
    outdir = tmp_path_factory.mktemp('runs')
    result = gda('train', '--data', data, '--source', source, '--outdir', outdir, '--plugin',
                 'freezed', '--plugin', 'diffaugment', '--freezed-layers', 3, '--iters', 2,
                 '--tick', 0.004, '--snap', 1)
    assert result.exit_code == 0, result.output
    assert 'Plugin freezed (gda 0.1.0) --freezed-layers=3' in result.output
    run_dir = os.path.join(outdir, os.listdir(outdir)[0])
    return HP.snapshot_path(run_dir)


def png(path):
    return np.asarray(PIL.Image.open(path))


def test_pairs_render_the_same_z_through_source_and_adapted_g(adapted, tmp_path):
    result = gda('generate', '--network', adapted, '--seeds', '0-2', '--pairs', '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    model = generate.open_model(adapted, need_source=True)
    source, tuned = generate.pairs(model, generate.seed_latents([0, 1, 2], model.G.z_dim))
    for index in range(3):
        pair = png(tmp_path / f'seed{index:04d}-pair.png')
        assert pair.shape == (16, 32, 3)
        assert np.array_equal(pair[:, :16], to_uint8(source[index:index + 1])[0])
        assert np.array_equal(pair[:, 16:], to_uint8(tuned[index:index + 1])[0])
    assert not np.array_equal(to_uint8(source), to_uint8(tuned))   # training changed G


def test_pairs_grid_has_a_source_row_and_an_adapted_row(adapted, tmp_path):
    result = gda('generate', '--network', adapted, '--seeds', '0-3', '--pairs', '--grid',
                 '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    grid = png(tmp_path / 'pairs.png')
    scale = 12                                      # 4 x 16 px upscaled to >= 768 px
    band = grid.shape[1] - 64 * scale               # the row labels' column on the left
    assert grid.shape[0] == 32 * scale and band > 0
    model = generate.open_model(adapted, need_source=True)
    z = generate.seed_latents([0, 1, 2, 3], model.G.z_dim)
    images = grid[:, band:][::scale, ::scale]
    assert np.array_equal(images[:16, :16], to_uint8(generate.render(model, z[:1], source=True))[0])
    assert np.array_equal(images[16:, 16:32], to_uint8(generate.render(model, z[1:2]))[0])


def test_generate_uses_nvidias_seeds_and_writes_one_file_per_seed(adapted, tmp_path):
    result = gda('generate', '--network', adapted, '--seeds', '3,5', '--trunc', 0.7, '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0003.png', 'seed0005.png']
    z = generate.seed_latents([5], 16)
    assert torch.equal(z, torch.from_numpy(np.random.RandomState(5).randn(1, 16)).float())
    G = stylegan2_ada.load(adapted)['G_ema']
    with torch.no_grad():
        expected = G(z, None, truncation_psi=0.7, noise_mode='const')
    assert np.array_equal(png(tmp_path / 'seed0005.png'), to_uint8(expected)[0])


def test_generate_works_from_the_snapshot_alone(adapted, tmp_path, monkeypatch):
    # The source G is stored in the snapshot: --pairs reads no other file and no network.
    opened = []
    real_load = stylegan2_ada.load

    def only_the_snapshot(source, *args, **kwargs):
        opened.append(str(source))
        return real_load(source, *args, **kwargs)
    monkeypatch.setattr(generate.stylegan2_ada, 'load', only_the_snapshot)
    result = gda('generate', '--network', adapted, '--seeds', 0, '--pairs', '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    assert opened == [str(adapted)]


def test_a_missing_plugin_names_its_distribution(adapted, tmp_path):
    data = torch.load(adapted, weights_only=True)
    data['gda']['plugins'].append(dict(name='ghost', distribution='gda-ghost-plugin',
                                       version='2.0', options={}, state={}))
    path = tmp_path / 'ghost.pkl'
    torch.save(data, path)
    result = gda('generate', '--network', path, '--outdir', tmp_path)
    assert result.exit_code == 2
    assert ("trained with plugin 'ghost' from distribution 'gda-ghost-plugin' 2.0, which is not "
            "installed here; install it (pip install gda-ghost-plugin)") in result.output


def test_pairs_need_a_source(tiny, tmp_path):
    data, _ = tiny
    G, D = HP.tiny_networks()
    path = tmp_path / 'scratch.pkl'
    save_snapshot(str(path), dict(G=G, D=D, G_ema=G))   # like a --source none run
    result = gda('generate', '--network', path, '--pairs', '--outdir', tmp_path)
    assert result.exit_code == 2 and 'has no source generator' in result.output


def test_a_left_out_source_is_loaded_by_reference_and_checked(adapted, tiny, tmp_path):
    data = torch.load(adapted, weights_only=True)
    data['gda']['source_G'] = None
    path = tmp_path / 'lean.pkl'
    torch.save(data, path)
    model = generate.open_model(str(path), need_source=True)
    assert model.G_s is not None
    data['gda']['source']['sha256'] = '0' * 64
    torch.save(data, path)
    with pytest.raises(stylegan2_ada.errors.UserError, match='has changed since training'):
        generate.open_model(str(path), need_source=True)


@pytest.mark.parametrize('args,message', [
    (['--class', '1'], '--class does not apply: the network is unconditional'),
    (['--seeds', 'a-b'], "expected numbers and ranges like 0-7,10"),
])
def test_user_errors(adapted, tmp_path, args, message):
    result = gda('generate', '--network', adapted, '--outdir', tmp_path, *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_conditional_network_needs_a_class(tmp_path):
    G, D = HP.tiny_networks(c_dim=4)
    path = tmp_path / 'cond.pkl'
    save_snapshot(str(path), dict(G=G, D=D, G_ema=G))
    result = gda('generate', '--network', path, '--outdir', tmp_path / 'out', '--seeds', '0-1')
    assert result.exit_code == 2 and 'give --class between 0 and 3' in result.output
    result = gda('generate', '--network', path, '--outdir', tmp_path / 'out', '--seeds', '0-1',
                 '--class', 2)
    assert result.exit_code == 0, result.output


def one_line_error(result, code=2):
    """The CLI's promise for a user's mistake: exit `code`, one line naming it, no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    assert 'Traceback' not in result.output
    return lines[0]


@pytest.mark.parametrize('seeds', ['5-2', '3-0,7'])
def test_a_reversed_seed_range_is_a_one_line_error(tmp_path, seeds):
    result = gda('generate', '--network', tmp_path / 'any.pkl', '--seeds', seeds,
                 '--outdir', tmp_path / 'out')
    line = one_line_error(result)
    assert 'runs backwards' in line and f'--seeds {seeds!r}' in line
    assert not os.path.exists(tmp_path / 'out')


def test_huge_seed_ranges_are_counted_without_listing_them():
    from gda_core.cmd_generate import parse_range
    seeds = parse_range('0-99999999,200000000')
    assert len(seeds) == 100_000_001
    assert next(iter(seeds.batches(3))) == [0, 1, 2]


def test_seeds_stream_in_batches_written_as_they_come_with_progress(adapted, tmp_path, monkeypatch):
    """Each batch is rendered and written before the next is drawn (memory stays flat, files
    appear at once), and long jobs print count, rate and ETA."""
    from gda_core import cmd_generate
    monkeypatch.setattr(cmd_generate, 'PROGRESS_EVERY', 0.0)
    drawn, real_latents = [], generate.seed_latents

    def seed_latents(seeds, z_dim):
        drawn.append((list(seeds), len(os.listdir(tmp_path))))
        return real_latents(seeds, z_dim)
    monkeypatch.setattr(generate, 'seed_latents', seed_latents)
    result = CliRunner().invoke(
        main, ['generate', '--network', adapted, '--seeds', '0-99', '--outdir', str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [len(seeds) for seeds, _ in drawn] == [32, 32, 32, 4]
    assert [files for _, files in drawn] == [0, 32, 64, 96]   # written before the next batch
    assert len(os.listdir(tmp_path)) == 100
    progress = result.stderr.splitlines()
    assert progress[0].startswith('32/100 images (32.0%), ') and 'ETA' in progress[0]
    assert result.stdout.strip() == f'Wrote 100 images to {tmp_path}'


def test_a_full_disk_while_generating_is_one_line_and_leaves_no_partial_file(adapted, tmp_path,
                                                                             small_disk):
    small_disk(1500)   # room for a few 16 px PNGs
    result = gda('generate', '--network', adapted, '--seeds', '0-7', '--outdir', tmp_path)
    line = one_line_error(result)
    assert 'the disk is full' in line and str(tmp_path) in line
    assert all(name.endswith('.png') and not name.startswith('.') for name in os.listdir(tmp_path))
    for name in os.listdir(tmp_path):
        assert PIL.Image.open(tmp_path / name).size == (16, 16)
