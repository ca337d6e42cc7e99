"""examples/demo/ship_source.py: a training snapshot slimmed to what fine-tuning needs."""

import hashlib
import json
import pathlib

import torch

from gda_core import training
from gda_testkit.examples import load_demo_script
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.networks import Discriminator, Generator


def load_script():
    return load_demo_script('ship_source')


def tiny_snapshot(path):
    torch.manual_seed(0)
    kwargs = dict(channel_base=128, channel_max=16)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kwargs)
    G_ema = Generator(**G.init_kwargs)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, **kwargs)
    adam = {'state': {0: {'exp_avg': torch.ones(1000)}}, 'param_groups': []}
    save_snapshot(str(path), dict(G=G, D=D, G_ema=G_ema,
                                  training_set_kwargs=dict(path='faces.zip', resolution=16),
                                  gda=dict(loop=dict(cur_nimg=12000, iteration=1500,
                                                     optimizers=dict(G=adam)))))
    return G_ema, D


def test_slim_keeps_g_ema_and_d_and_fine_tuning_accepts_it(tmp_path):
    run = tmp_path / 'runs' / '00000-demo-source'
    run.mkdir(parents=True)
    (run / 'training_options.json').write_text(json.dumps(dict(source='none', options=dict(batch=8))))
    G_ema, D = tiny_snapshot(run / 'network-snapshot-000012.pkl')
    ship = tmp_path / 'ship'
    ship.mkdir()
    diversity = tmp_path / 'diversity.jsonl'
    diversity.write_text(json.dumps(dict(snapshot='network-snapshot-000008.pkl', ratio=0.5)) + '\n'
                         + json.dumps(dict(snapshot='network-snapshot-000012.pkl', ratio=0.9)) + '\n')
    assert load_script().main([str(run / 'network-snapshot-000012.pkl'), '--ship', str(ship),
                               '--diversity', str(diversity)]) == 0

    model = ship / 'source-noto-emoji-32.pkl'
    record = json.loads((ship / 'source_model.json').read_text())
    assert record['diversity'] == dict(snapshot='network-snapshot-000012.pkl', ratio=0.9)
    assert record['sha256'] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (record['kimg'], record['iteration']) == (12, 1500)
    assert record['runs'] == [dict(run='00000-demo-source', source='none', options=dict(batch=8))]
    data, G, D_loaded = training.load_source(str(model))
    assert data['G'] is None and data['gda']['loop'] == {}
    assert data['training_set_kwargs']['resolution'] == 16
    for mine, theirs in ((G, G_ema), (D_loaded, D)):
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(a, b), name


def test_a_file_without_d_is_refused(tmp_path, capsys):
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    save_snapshot(str(tmp_path / 'g.pkl'), dict(G_ema=G))
    assert load_script().main([str(tmp_path / 'g.pkl'), '--ship', str(tmp_path)]) == 2
    assert 'lacks G_ema or D' in capsys.readouterr().err
