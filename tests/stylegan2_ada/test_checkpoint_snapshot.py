"""gda snapshots and state_dict export/import: plain data, weights_only-readable, atomic writes."""

import os

import numpy as np
import pytest
import torch

import stylegan2_ada
from stylegan2_ada.checkpoint import export_state_dict, import_state_dict, save_snapshot
from stylegan2_ada.checkpoint.snapshot import FORMAT_VERSION
from stylegan2_ada.errors import UserError
from stylegan2_ada.networks import Generator

pytestmark = pytest.mark.usefixtures('isolated_cache')


@pytest.fixture(scope='module')
def nets(ckpt):
    return ckpt.tiny_networks('tiny32_cond_orig_freeze2')


def _snapshot(nets, **gda):
    G = nets['G']
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.002, betas=(0.0, 0.99))
    optimizer.param_groups[0]['params'][0].grad = torch.ones(3)
    optimizer.step()
    entry = dict(source=dict(reference='ffhq256', url=None, sha256='ab' * 32, kwargs=G.init_kwargs),
                 source_G=nets['G_ema'],
                 plugins=[dict(name='cdc', distribution='gda', version='0.1.0', options=dict(weight=1000.0),
                               state=dict(anchors=torch.randn(4, 32), step=7))],
                 loop=dict(cur_nimg=1024, iteration=256, optimizers=dict(G=optimizer.state_dict()),
                           rng=dict(torch=torch.get_rng_state())))
    entry.update(gda)
    return dict(nets, training_set_kwargs=dict(path='data.zip', xflip=True), gda=entry)


def test_snapshot_round_trip(tmp_path, ckpt, nets):
    path = tmp_path / 'network-snapshot-000001.pkl'
    save_snapshot(path, _snapshot(nets))
    raw = torch.load(path, weights_only=True)  # readable by torch's safe loader, without gda
    assert raw['gda']['format_version'] == FORMAT_VERSION
    assert set(raw['G']) == {'class_name', 'init_kwargs', 'state_dict'} and raw['G']['class_name'] == 'Generator'
    data = stylegan2_ada.load(path)
    assert data['origin']['format'] == 'gda-snapshot'
    golden = ckpt.golden('tiny32_cond_orig_freeze2')
    for key in ('G', 'D', 'G_ema', 'augment_pipe'):
        torch.testing.assert_close(data[key].state_dict(), nets[key].state_dict(), rtol=0, atol=0)
    z, c = golden['z'][:2], golden['c'][:2]
    torch.testing.assert_close(data['G_ema'](z, c, noise_mode='const'), nets['G_ema'](z, c, noise_mode='const'),
                               rtol=0, atol=0)
    assert 'b32.fromrgb.weight' in dict(data['D'].named_buffers())
    assert float(data['augment_pipe'].p) == 0.25
    gda = data['gda']
    assert isinstance(gda['source_G'], Generator)
    assert gda['plugins'][0]['state']['step'] == 7 and gda['plugins'][0]['options'] == dict(weight=1000.0)
    assert gda['loop']['optimizers']['G']['state'][0]['step'] == 1
    assert data['training_set_kwargs'] == dict(path='data.zip', xflip=True)


def test_source_G_may_be_left_out(tmp_path, nets):
    path = tmp_path / 'snap.pkl'
    save_snapshot(path, _snapshot(nets, source_G=None))
    assert stylegan2_ada.load(path)['gda']['source_G'] is None


def test_non_plain_plugin_state_is_refused_with_its_place(tmp_path, nets):
    bad = _snapshot(nets)
    bad['gda']['plugins'][0]['state']['mask'] = np.zeros(3)
    with pytest.raises(UserError, match=r"gda\['plugins'\]\[0\]\['state'\]\['mask'\] is a numpy.ndarray"):
        save_snapshot(tmp_path / 'snap.pkl', bad)
    bad['gda']['plugins'][0]['state']['mask'] = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match=r"\['mask'\] is a Linear module; store its state_dict"):
        save_snapshot(tmp_path / 'snap.pkl', bad)
    assert not (tmp_path / 'snap.pkl').exists()


def test_malformed_gda_entries_are_refused(tmp_path, nets):
    with pytest.raises(UserError, match='unknown keys extra'):
        save_snapshot(tmp_path / 's.pkl', _snapshot(nets, extra=1))
    with pytest.raises(UserError, match=r"gda\['plugins'\]\[0\] must be a dict with exactly"):
        save_snapshot(tmp_path / 's.pkl', _snapshot(nets, plugins=[dict(name='cdc')]))


def test_newer_snapshot_format_is_refused(tmp_path, nets):
    path = tmp_path / 'snap.pkl'
    save_snapshot(path, _snapshot(nets))
    data = torch.load(path, weights_only=True)
    data['gda']['format_version'] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(UserError, match='newer than this gda reads'):
        stylegan2_ada.load(path)


def test_failed_write_keeps_the_old_file(tmp_path, nets, monkeypatch):
    path = tmp_path / 'snap.pkl'
    save_snapshot(path, _snapshot(nets))
    before = path.read_bytes()

    def broken_save(obj, file):
        file.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_snapshot(path, _snapshot(nets))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['snap.pkl']  # no temporary file left behind


def test_export_and_import_state_dict(tmp_path, ckpt, nets):
    path = tmp_path / 'weights.pt'
    export_state_dict(path, G_ema=nets['G_ema'], D=nets['D'])
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {'G_ema_class', 'G_ema_kwargs', 'G_ema_state', 'D_class', 'D_kwargs', 'D_state'}
    data = stylegan2_ada.load(path)
    assert data['origin']['format'] == 'state-dict' and data['G'] is None
    torch.testing.assert_close(data['G_ema'].state_dict(), nets['G_ema'].state_dict())
    fresh = Generator(**nets['G'].init_kwargs)
    import_state_dict(fresh, path, key='G_ema')
    torch.testing.assert_close(fresh.state_dict(), nets['G_ema'].state_dict())
    with pytest.raises(UserError, match='holds several networks; pass key='):
        import_state_dict(fresh, path)


def test_import_state_dict_names_mismatches(nets):
    kwargs = dict(nets['G'].init_kwargs, mapping_kwargs=dict(num_layers=3))
    with pytest.raises(UserError, match=r'missing mapping\.fc2\.weight, mapping\.fc2\.bias'):
        import_state_dict(Generator(**kwargs), nets['G'].state_dict())


def test_golden_files_load_as_state_dicts_with_kwargs(ckpt):
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / 'data' / 'tiny32_skip_resnet.pt'
    data = stylegan2_ada.load(path)
    golden = ckpt.golden('tiny32_skip_resnet')
    assert data['origin']['format'] == 'state-dict'
    torch.testing.assert_close(data['G'].synthesis(golden['ws_psi07'], noise_mode='const'),
                               golden['img_psi07_const'], rtol=0, atol=1e-5)
    assert torch.equal(data['ws_psi07'], golden['ws_psi07'])  # other keys come through


def test_bare_state_dict_explains_what_to_do(tmp_path, nets):
    path = tmp_path / 'bare.pt'
    torch.save(nets['G'].state_dict(), path)
    with pytest.raises(UserError, match='bare state_dict without constructor kwargs.*import_state_dict'):
        stylegan2_ada.load(path)


def test_full_module_torch_save_is_refused(tmp_path, nets):
    path = tmp_path / 'module.pt'
    torch.save({'G': torch.nn.Linear(2, 2)}, path)
    with pytest.raises(UserError, match="outside torch's weights-only allow-list"):
        stylegan2_ada.load(path)
