"""`gda report`: one self-contained HTML page (inline SVG curves, base64 images) of a run."""

import base64
import io
import json
import math
import os
import re

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from gda_core.cli import main
from gda_core.report import build_report, loss_series, nice_ticks, svg_chart
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.networks import Generator


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(seed):
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()


def _png(path, size):
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, [size, size, 3], dtype=np.uint8)).save(path)


def _images(page):
    return [PIL.Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)]


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / '00000-demo'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text(json.dumps(dict(cfg='fewshot', batch=4, source='ffhq256')))
    ticks = [dict(tick=t, kimg=0.4 * t, augment=0.01 * t, losses={'Loss/G/loss': 1.0 / t, 'Loss/D/loss': 0.5 + t},
                  **{'cdc/dist': 0.1 * t}) for t in range(1, 6)]
    (run_dir / 'stats.jsonl').write_text(''.join(json.dumps(t) + '\n' for t in ticks) + '{"tick": 6, "kim')
    records = [dict(metric='fid', results=dict(fid=9.0), snapshot='network-snapshot-000000.pkl', kimg=0.4),
               dict(metric='fid', results=dict(fid=7.0), snapshot='network-snapshot-000000.pkl', kimg=0.4),
               dict(metric='fid', results=dict(fid=5.0), snapshot='network-snapshot-000002.pkl', kimg=2.0)]
    (run_dir / 'metric-fid.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    (run_dir / 'metric-pr.jsonl').write_text(json.dumps(dict(metric='pr', results=dict(precision=0.8, recall=0.3),
                                                             snapshot='network-snapshot-000002.pkl', kimg=2.0)) + '\n')
    _png(run_dir / 'reals.png', 64)
    _png(run_dir / 'fakes_init.png', 64)
    for kimg in range(6):
        _png(run_dir / f'fakes{kimg:06d}.png', 1024 if kimg == 5 else 64)
    save_snapshot(run_dir / 'network-snapshot-000002.pkl', dict(
        G=_generator(1), D=None, G_ema=_generator(1), augment_pipe=None, training_set_kwargs=None,
        gda=dict(source=None, source_G=_generator(0), plugins=[], loop=dict(cur_nimg=2000))))
    return run_dir


def test_nice_ticks():
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(3.2, 47) == [10, 20, 30, 40]
    assert nice_ticks(5, 5) == [5]


def test_loss_series_takes_losses_plugin_logs_and_augment():
    series = loss_series([dict(kimg=1.0, augment=0.2, losses={'Loss/G/loss': 2.0}, **{'rssa/scc': 0.5}),
                          dict(kimg=2.0, losses={'Loss/G/loss': float('nan')}), dict(losses={'x': 1.0})])
    assert series['rssa/scc'] == [(1.0, 0.5)] and series['augment p'] == [(1.0, 0.2)]
    assert series['Loss/G/loss'][0] == (1.0, 2.0) and math.isnan(series['Loss/G/loss'][1][1])
    assert set(series) == {'Loss/G/loss', 'rssa/scc', 'augment p'}


def test_non_finite_values_are_marked_not_dropped():
    """A diverged run: the chart keeps the finite curve and marks each NaN/inf with a red cross,
    saying from which kimg the values are non-finite."""
    svg = svg_chart('Loss/G/loss', {'Loss/G/loss': [(0.0, 1.0), (1.0, 2.0), (2.0, float('nan')),
                                                    (3.0, float('inf'))]})
    assert len(re.findall(r'class="nonfinite"[^>]*>×<', svg)) == 2
    assert 'non-finite: nan from kimg 2 (2 value(s))' in svg
    assert len(re.search(r'points="([^"]+)"', svg).group(1).split()) == 2
    only_nan = svg_chart('x', {'x': [(0.0, float('nan'))]})
    assert 'non-finite: nan from kimg 0 (1 value(s))' in only_nan


def test_the_report_of_a_diverged_run_shows_its_nan_losses(tmp_path):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'stats.jsonl').write_text(
        json.dumps(dict(kimg=0.1, losses={'Loss/G/loss': 1.5})) + '\n'
        + json.dumps(dict(kimg=0.2, losses={'Loss/G/loss': float('nan')})) + '\n')
    page = build_report(str(run_dir), pairs_count=0)
    assert '>Loss/G/loss<' in page and 'non-finite: nan from kimg 0.2' in page


@pytest.mark.parametrize('command', ['report', 'metrics'])
def test_a_folder_that_is_no_run_directory_is_one_line_and_nothing_is_written(tmp_path, command):
    (tmp_path / 'photos').mkdir()
    (tmp_path / 'photos/a.txt').write_text('not a run')
    result = CliRunner().invoke(main, [command, str(tmp_path / 'photos')])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and 'Traceback' not in result.output
    assert 'is a folder but not a run directory' in lines[0]
    assert sorted(os.listdir(tmp_path / 'photos')) == ['a.txt']


def test_svg_chart_places_points_inside_the_plot():
    svg = svg_chart('fid', {'fid': [(0.0, 10.0), (4.0, 2.0)]})
    assert svg.startswith('<svg') and svg.endswith('</svg>') and '>fid<' in svg and 'last 2' in svg
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(','))) for p in points]
    assert x0 < x1 and y0 < y1   # higher value, higher on the page


def test_report_is_self_contained_with_every_section(run):
    page = build_report(str(run), pairs_count=4)
    assert 'src="http' not in page and '<link' not in page and '<script' not in page
    titles = re.findall(r'font-size="13">([^<]+)</text>', page)
    assert titles == ['Loss/D/loss', 'Loss/G/loss', 'augment p', 'cdc/dist', 'fid', 'pr']
    assert 'last 5' in page and 'last 7' not in page.split('>fid<')[0]   # fid: the last record per snapshot
    assert 'precision 0.8' in page and 'recall 0.3' in page
    images = _images(page)
    assert len(images) == 1 + 1 + 4 + 1                 # reals, init, four fakes, pairs
    assert max(image.width for image in images) == 768  # big grids are scaled down
    assert images[-1].size == (4 * 16, 2 * 16)          # source row over adapted row
    assert 'fakes000005.png (5 kimg)' in page and 'fakes000001.png' not in page
    assert 'fewshot' in page


def test_report_of_an_empty_run_and_of_plugin_snapshots(tmp_path, run):
    empty = build_report(str(tmp_path), pairs_count=2)
    assert 'No stats.jsonl entries yet' in empty and 'No metric-*.jsonl yet' in empty and 'No snapshot yet' in empty
    save_snapshot(run / 'network-snapshot-000004.pkl', dict(
        G=_generator(1), D=None, G_ema=_generator(1), augment_pipe=None, training_set_kwargs=None,
        gda=dict(source=None, source_G=_generator(0), loop={},
                 plugins=[dict(name='nosuchplugin', distribution='gda-nosuch', version='0', options={}, state={})])))
    page = build_report(str(run), pairs_count=2)                  # the rest of the page is still written
    assert 'cannot be rendered through its plugins' in page and 'gda-nosuch' in page and 'Loss/G/loss' in page
    save_snapshot(run / 'network-snapshot-000006.pkl', dict(G=_generator(1), D=None, G_ema=_generator(1),
                                                            augment_pipe=None, training_set_kwargs=None, gda=None))
    assert 'stores no source generator' in build_report(str(run), pairs_count=2)


def test_gda_report_command(run, tmp_path):
    out = tmp_path / 'r.html'
    result = CliRunner().invoke(main, ['report', str(run), '--out', str(out), '--pairs', '2'])
    assert result.exit_code == 0, result.output
    assert f'Report written to {out}' in result.output and out.read_text().startswith('<!DOCTYPE html>')
    missing = CliRunner().invoke(main, ['report', str(tmp_path / 'nope')])
    assert missing.exit_code == 2 and 'not a directory' in missing.output


def test_report_renders_plugin_snapshots_through_the_plugin_host(run, monkeypatch):
    from gda_core import generate as host
    save_snapshot(run / 'network-snapshot-000004.pkl', dict(
        G=_generator(1), D=None, G_ema=_generator(1), augment_pipe=None, training_set_kwargs=None,
        gda=dict(source=None, source_G=_generator(0), loop={},
                 plugins=[dict(name='genda', distribution='gda', version='0', options={}, state={})])))

    class Model:
        G_s, device = _generator(0), torch.device('cpu')
    monkeypatch.setattr(host, 'open_model', lambda source, device: Model())
    monkeypatch.setattr(host, 'pairs', lambda model, z, **kw: (torch.full([len(z), 3, 16, 16], -1.0),
                                                               torch.full([len(z), 3, 16, 16], 1.0)))
    page = build_report(str(run), pairs_count=3)
    assert 'through the plugins genda' in page
    pairs = np.asarray(_images(page)[-1])
    assert pairs.shape == (32, 48, 3) and (pairs[:16] == 0).all() and (pairs[16:] == 255).all()
