"""benchmarks/gpu_paper256.py: the CPU dry run (--tiny) goes through the same runs and table as on
a GPU; the random network has paper256's shape; bad input is a one-line usage error."""

import json
import pathlib

import pytest
from click.testing import CliRunner

from gda_core.training import build_networks

import gpu_paper256 as GPU  # by name: see conftest.py

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_tiny_dry_run_trains_each_configuration_and_reports_speed_and_memory(tmp_path):
    result = CliRunner().invoke(GPU.main, ['--tiny', '--device', 'cpu', '--configs', 'baseline,idc',
                                           '--workdir', str(tmp_path / 'work'), '--out', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / 'out' / 'gpu_paper256.json').read_text())
    assert data['protocol']['random_init'] and data['protocol']['iters'] == 2
    assert [row['config'] for row in data['rows']] == ['baseline', 'idc']
    for row in data['rows']:
        assert row['status'] == 'ok' and row['sec_per_kimg'] > 0 and row['peak_rss_mb'] > 100
        assert row['peak_gpu_gb'] == row['steady_gpu_gb'] == 0.0 and 'kid' not in row   # CPU; random weights: no metrics
    for run in data['runs']:
        assert '--device cpu' in run['command'] and '--iters 2' in run['command']
    table = (tmp_path / 'out' / 'gpu_paper256.md').read_text()
    assert 'Randomly initialised network (tiny 32 px)' in table and 'no metrics' in table
    assert data['command'] == ('python benchmarks/gpu_paper256.py --configs baseline,idc --tiny --device cpu '
                               f'--workdir {tmp_path / "work"} --out {tmp_path / "out"}')   # option order


def test_the_random_network_has_nvidias_paper256_shape():
    """Every key and shape of NVIDIA's paper256 G and D (the reference file of the network tests)."""
    reference = json.loads((ROOT / 'tests' / 'data' / 'stylegan2-ada-state-dict-keys.json').read_text())['paper256']
    G, D = build_networks(GPU.PAPER256['options'], 256, 3, 0)   # what random_source saves
    assert sum(p.numel() for p in G.parameters()) == reference['G_params']
    assert sum(p.numel() for p in D.parameters()) == reference['D_params']
    for net, name in ((G, 'G'), (D, 'D')):
        shapes = {key: list(value.shape) for key, value in net.state_dict().items()}
        assert shapes == reference[name]


@pytest.mark.parametrize('args, message', [
    (['--device', 'cuda:0', '--random-init'], 'no CUDA device here'),
    (['--device', 'cpu'], '--data is required'),
])
def test_bad_input_is_a_one_line_usage_error(args, message, monkeypatch):
    monkeypatch.setattr(GPU.torch.cuda, 'is_available', lambda: False)
    result = CliRunner().invoke(GPU.main, args)
    assert result.exit_code == 2 and message in result.output and 'Traceback' not in result.output
