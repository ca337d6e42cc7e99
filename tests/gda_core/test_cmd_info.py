"""`gda info`: configuration of NVIDIA pickles and gda snapshots, as text or JSON; errors exit 2."""

import json

import pytest
from click.testing import CliRunner

from gda_core.cli import main
from stylegan2_ada.checkpoint import save_snapshot


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))


def _run(*args):
    return CliRunner().invoke(main, ['info', *map(str, args)])


def test_info_on_an_nvidia_pickle(tmp_path, ckpt):
    nets = ckpt.tiny_networks('tiny32_cond_orig_freeze2')
    path = tmp_path / 'net.pkl'
    path.write_bytes(ckpt.nvidia_pickle_bytes(dict(nets, training_set_kwargs=ckpt.training_set_kwargs())))
    result = _run(path)
    assert result.exit_code == 0, result.output
    text = result.output
    assert 'NVIDIA StyleGAN2-ADA pickle' in text and 'networks      G, D, G_ema, augment_pipe' in text
    assert 'z/c/w dims  32 / 3 / 32, 8 ws' in text and 'channels    4:64 8:64 16:64 32:32' in text
    assert 'frozen      b32.conv0, b32.fromrgb' in text and 'arch        orig' in text
    assert 'not a gda snapshot' in text

    summary = json.loads(_run(path, '--json').output)
    G = summary['networks']['G']
    assert G['mapping_layers'] == 2 and G['resolution'] == 32 and G['fp16_resolutions'] == []
    assert G['parameters'] == sum(p.numel() for p in nets['G'].parameters())
    assert summary['networks']['D']['frozen_parameters'] > 0
    assert summary['networks']['augment_pipe']['enabled'] == ['xflip', 'rotate90', 'xint', 'brightness']
    assert summary['training_set_kwargs']['resolution'] == 32


def test_info_lists_stored_plugins(tmp_path, ckpt):
    nets = ckpt.tiny_networks('tiny32_skip_resnet', augment=False)
    path = tmp_path / 'snap.pkl'
    plugin = dict(name='cdc', distribution='gda', version='0.1.0', options={'weight': 1000.0}, state={})
    save_snapshot(path, dict(nets, gda=dict(source=dict(reference='ffhq256', sha256='0' * 64, kwargs={}),
                                            source_G=nets['G'], plugins=[plugin], loop=dict(cur_nimg=400))))
    text = _run(path).output
    assert 'gda snapshot' in text and 'plugins     cdc (gda 0.1.0)' in text
    assert 'source G    stored' in text and 'cur_nimg 400' in text
    summary = json.loads(_run(path, '--json').output)
    assert summary['gda']['plugins'][0]['name'] == 'cdc'
    assert summary['gda']['source_G']['kind'] == 'generator'


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    result = _run(tmp_path / 'missing.pkl')
    assert result.exit_code == 2
    assert result.output.count('\n') == 1 and result.output.startswith('Error: source')
    (tmp_path / 'evil.pkl').write_bytes(b'\x80\x03cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.')
    result = _run(tmp_path / 'evil.pkl')
    assert result.exit_code == 2 and 'posix.system' in result.output and result.output.count('\n') == 1
