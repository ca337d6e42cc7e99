"""evaluate / evaluate_snapshot: one pass shared by metrics, reference features cached by content,
records appended per snapshot, the caller's random state untouched, labels for conditional nets."""

import json

import pytest
import torch

from gda_core import metrics
from gda_core.metrics import evaluate, evaluate_network, evaluate_snapshot, parse_metrics
from gda_core.metrics.evaluation import latents
from gda_core.metrics.records import read_records
from gda_core.metrics.reference import CACHE_SUBDIR
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.errors import UserError


def test_parse_metrics():
    assert parse_metrics('fid, kid,fid') == ['fid', 'kid']
    assert list(metrics.METRICS) == ['fid', 'kid', 'pr', 'is', 'intra_lpips', 'scs']
    with pytest.raises(UserError, match='unknown metric.*fdi.*choose from fid, kid'):
        parse_metrics('fdi')


def test_latents_do_not_depend_on_batching():
    whole = latents(8, 0, 2100, seed=3)
    assert torch.equal(torch.cat([latents(8, lo, min(lo + 700, 2100), seed=3) for lo in range(0, 2100, 700)]), whole)
    assert not torch.equal(latents(8, 0, 10, seed=4), whole[:10])


def test_one_generation_pass_serves_several_metrics(make_generator, image_folder, detector_files, tmp_path,
                                                    monkeypatch):
    G = make_generator()
    data = image_folder(tmp_path / 'ref', torch.randint(0, 256, [12, 3, 16, 16], dtype=torch.uint8))
    calls = []
    original = G.forward
    monkeypatch.setattr(G, 'forward', lambda *args, **kwargs: calls.append(len(args[0])) or original(*args, **kwargs))
    records = evaluate('fid,kid,pr,is', G, data=data, num_gen=20, batch=10, detector_paths=detector_files)
    assert sum(calls) == 20
    assert set(records) == {'fid', 'kid', 'pr', 'is'}
    assert set(records['pr']['results']) == {'precision', 'recall'}
    assert set(records['is']['results']) == {'is_mean', 'is_std'}
    assert records['kid']['protocol']['subset_size'] == 12 and records['fid']['protocol']['data'] == data


def test_reference_features_are_cached_by_content(make_generator, image_folder, detector_files, tmp_path):
    G = make_generator()
    images = torch.randint(0, 256, [6, 3, 16, 16], dtype=torch.uint8)
    first = image_folder(tmp_path / 'a', images)
    cache = tmp_path / 'cache' / CACHE_SUBDIR
    fid = evaluate(['fid'], G, data=first, num_gen=8, detector_paths=detector_files)['fid']['results']['fid']
    assert len(list(cache.iterdir())) == 1
    moved = image_folder(tmp_path / 'b', images)            # same content elsewhere: same entry
    assert evaluate(['fid'], G, data=moved, num_gen=8, detector_paths=detector_files)['fid']['results']['fid'] == fid
    assert len(list(cache.iterdir())) == 1
    images[0, 0, 0, 0] ^= 1                                 # one pixel changed: a new entry
    image_folder(tmp_path / 'b', images)
    evaluate(['fid'], G, data=moved, num_gen=8, detector_paths=detector_files)
    assert len(list(cache.iterdir())) == 2


def test_evaluation_leaves_the_callers_random_state_alone(make_generator):
    G = make_generator()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    evaluate(['scs'], G, source_G=G, num_gen=4)
    assert torch.equal(torch.get_rng_state(), state)


def test_conditional_networks_draw_c_from_the_reference_labels(make_generator, image_folder, detector_files,
                                                               tmp_path):
    G = make_generator(c_dim=2)
    data = image_folder(tmp_path / 'ref', torch.randint(0, 256, [6, 3, 16, 16], dtype=torch.uint8))
    (tmp_path / 'ref' / 'dataset.json').write_text(json.dumps(
        dict(labels=[[f'{i:04d}.png', i % 2] for i in range(6)])))
    seen = []
    record = evaluate(['fid'], G, generate=lambda z, c: seen.append(c) or G(z, c), data=data, num_gen=6,
                      detector_paths=detector_files)['fid']
    c = torch.cat(seen)
    assert record['results']['fid'] >= 0 and c.shape == (6, 2) and (c.sum(1) == 1).all()
    with pytest.raises(UserError, match='conditioned on 3 labels'):
        evaluate(['fid'], make_generator(c_dim=3), data=data, num_gen=6, detector_paths=detector_files)


def _snapshot(path, G, source_G, kimg, plugins=()):
    save_snapshot(path, dict(G=G, D=None, G_ema=G, augment_pipe=None,
                             training_set_kwargs=dict(path='/nowhere/data.zip', resolution=16),
                             gda=dict(source=None, source_G=source_G, plugins=list(plugins),
                                      loop=dict(cur_nimg=int(kimg * 1000), iteration=int(kimg * 250)))))


def test_evaluate_snapshot_appends_a_record_per_metric(make_generator, image_folder, detector_files, tmp_path):
    G, source = make_generator(0), make_generator(1)
    data = image_folder(tmp_path / 'ref', torch.randint(0, 256, [6, 3, 16, 16], dtype=torch.uint8))
    run = tmp_path / 'run'
    run.mkdir()
    options = dict(data=data, num_gen=6, detector_paths=detector_files)
    paths = {}
    for kimg in (4, 8):
        paths[kimg] = str(run / f'network-snapshot-{kimg:06d}.pkl')
        _snapshot(paths[kimg], G, source, kimg)
        evaluate_snapshot(str(run), paths[kimg], 'fid,scs', **options)
    fid = read_records(run / 'metric-fid.jsonl')
    assert [(r['kimg'], r['iteration'], r['snapshot']) for r in fid] == [
        (4, 1000, 'network-snapshot-000004.pkl'), (8, 2000, 'network-snapshot-000008.pkl')]
    scs = read_records(run / 'metric-scs.jsonl')
    assert len(scs) == 2 and scs[0]['results']['scs'] < 1 and scs[0]['protocol']['num_pairs'] == 6
    evaluate_snapshot(str(run), paths[4], ['fid'], **options)      # re-evaluated: the last line counts
    assert len((run / 'metric-fid.jsonl').read_text().splitlines()) == 3
    assert len(read_records(run / 'metric-fid.jsonl')) == 2

    # The training loop passes its live networks instead (no reload), with kimg and iteration.
    live = evaluate_snapshot(str(run), str(run / 'network-snapshot-000012.pkl'), ['fid'], G=G, kimg=12.0,
                             iteration=3000, **options)
    assert live['fid']['kimg'] == 12.0 and read_records(run / 'metric-fid.jsonl')[-1]['iteration'] == 3000
    assert live['fid']['results'] == fid[0]['results']   # the same network: the same number


def test_plugin_snapshots_are_rendered_through_the_plugin_host(make_generator, tmp_path, monkeypatch):
    from gda_core import generate as host
    G, other = make_generator(0), make_generator(1)
    path = tmp_path / 'snap.pkl'
    plugin = dict(name='nosuchplugin', distribution='gda-nosuch', version='0.1.0', options={}, state={})
    _snapshot(path, G, other, 1, plugins=[plugin])
    with pytest.raises(UserError, match='gda-nosuch'):   # the host's error: the plugin is not installed
        evaluate_network(str(path), ['scs'], num_gen=4)

    calls = []

    class Model:
        G_s, device = G, torch.device('cpu')   # the host's source pipeline (stand-in: G itself)
    monkeypatch.setattr(host, 'open_model', lambda source, device: calls.append(source) or Model())
    monkeypatch.setattr(host, 'pairs', lambda model, z, **kw: (model.G_s(z, None, noise_mode='const'),
                                                               G(z, None, noise_mode='const')))
    monkeypatch.setattr(host, 'render', lambda model, z, c, **kw: torch.zeros([len(z), 3, 16, 16]))
    record = evaluate_network(str(path), ['scs'], num_gen=4)['scs']
    assert calls == [str(path)] and record['results']['scs'] == pytest.approx(1.0)   # the host's pairs
    assert record['protocol']['plugins'] == ['nosuchplugin']
    swapped = evaluate_network(str(path), ['scs'], num_gen=4, source=other)['scs']    # --source: host's G_s replaced
    assert swapped['results']['scs'] < 1
    same = lambda z: (G(z, None, noise_mode='const'),) * 2   # noqa: E731
    given = evaluate_network(str(path), ['scs'], num_gen=4, pairs=same)['scs']
    assert len(calls) == 2 and given['results']['scs'] == pytest.approx(1.0)          # given pairs: no host
