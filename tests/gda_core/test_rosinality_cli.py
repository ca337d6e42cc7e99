"""rosinality checkpoints through the CLI: info, fine-tuning from one (--source), generate, export."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main

from gda_testkit import rosinality as R

WIDTHS = {4: 16, 8: 16, 16: 8}


def gda(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def write_images(folder, count=6, res=16):
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    for i in range(count):
        PIL.Image.fromarray((rng.rand(res, res, 3) * 255).astype(np.uint8)).save(folder / f'{i}.png')
    return folder


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """A tiny rosinality train.py checkpoint (16 px; g, d, g_ema, optimisers, args) and its networks."""
    nets = R.networks(16, style_dim=16, n_mlp=2, channels=WIDTHS, seed=3)
    path = tmp_path_factory.mktemp('ros') / 'rosinality.pt'
    torch.save(R.checkpoint(*nets), path)
    return path, nets


@pytest.fixture(scope='module')
def run(source, tmp_path_factory):
    """`gda train --source rosinality.pt` for one iteration: the run folder."""
    root = tmp_path_factory.mktemp('run')
    result = gda('train', '--data', write_images(root / 'data'), '--source', source[0], '--outdir', root / 'runs',
                 '--iters', 1, '--snap', 1)
    assert result.exit_code == 0, result.output
    return root / 'runs' / os.listdir(root / 'runs')[0]


def test_info_names_the_format_and_the_inferred_architecture(source):
    result = gda('info', source[0])
    assert result.exit_code == 0, result.stderr
    assert 'format        rosinality/stylegan2-pytorch checkpoint (converted)' in result.output
    assert ('architecture  size 16, style_dim 16, n_mlp 2, no channel multiplier (widths 4:16 8:16 16:8) '
            '(from the args and tensors)') in result.output
    assert 'networks    g -> G, d -> D, g_ema -> G_ema' in result.output
    assert 'w_avg       estimated: mean w of 4096 z, seed 0' in result.output


def test_info_on_an_inconsistent_file_is_one_line_and_exit_2(source, tmp_path):
    g, d, g_ema = source[1]
    torch.save({'g_ema': g_ema.state_dict(), 'd': R.networks(32, 16, 2, channels={**WIDTHS, 32: 8})[1].state_dict()},
               tmp_path / 'mixed.pt')
    result = gda('info', tmp_path / 'mixed.pt')
    assert result.exit_code == 2
    assert result.stderr.count('\n') == 1 and 'd is for 32 px images but the generator makes 16 px' in result.stderr


def test_fine_tuning_starts_from_the_rosinality_networks(source, run):
    snapshot = sorted(name for name in os.listdir(run) if name.startswith('network-snapshot-'))[-1]
    data = stylegan2_ada.load(str(run / snapshot))
    converted = stylegan2_ada.load(str(source[0]))
    assert data['gda']['source']['reference'] == str(source[0])
    source_G = data['gda']['source_G']
    assert all(torch.equal(source_G.state_dict()[k], v) for k, v in converted['G_ema'].state_dict().items())
    assert data['D'].state_dict().keys() == converted['D'].state_dict().keys()
    assert not all(torch.equal(data['D'].state_dict()[k], v) for k, v in converted['D'].state_dict().items())


def test_generate_from_a_rosinality_checkpoint(source, tmp_path):
    result = gda('generate', '--network', source[0], '--seeds', '0-1', '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0000.png', 'seed0001.png']


def test_export_to_rosinality_runs_in_rosinalitys_forward_pass(run, tmp_path):
    snapshot = run / sorted(name for name in os.listdir(run) if name.startswith('network-snapshot-'))[-1]
    out = tmp_path / 'adapted.pt'
    result = gda('export', '--network', snapshot, '--out', out, '--format', 'rosinality')
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f'Wrote {out}: 16px rosinality checkpoint (')
    written = torch.load(out, weights_only=True)
    assert set(written) == {'g_ema', 'g', 'd', 'latent_avg'}
    g_ema = R.Generator(16, 16, 2, channels=WIDTHS)
    g_ema.load_state_dict(written['g_ema'], strict=True)
    d = R.Discriminator(16, channels=WIDTHS)
    d.load_state_dict(written['d'], strict=True)
    ours = stylegan2_ada.load(str(snapshot))
    z = torch.randn([4, 16], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ours['G_ema'](z, None, truncation_psi=0.7, noise_mode='const')
        got = g_ema(z, 0.7, written['latent_avg'][None])
        assert (got - expected).abs().max() < 1e-4
        assert (d(expected) - ours['D'](expected, None)).abs().max() < 1e-4
    info = gda('info', out)
    assert 'rosinality/stylegan2-pytorch checkpoint' in info.output and 'w_avg       latent_avg in the file' in info.output
