"""--cfg fewshot is CDC's setting: ADA's p moves at CDC's rate (0.6 per 500k images), the data is
mirrored, training_options.json says where each value comes from, and --source-g G starts from
the source's G as CDC's code does with rosinality's `g`."""

import json
import types

import pytest
import torch
from click.testing import CliRunner

from gda_core import training
from gda_core.cli import main
from stylegan2_ada.augment import AdaController
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.training_config import preset

from gda_testkit import plugins as HP


def test_fewshot_ada_moves_p_at_cdcs_rate():
    # CDC: ada_aug_step = ada_target / ada_length = 0.6 / 500k per image while E[sign] > target.
    # After 20 kimg of reals all scored positive, p = 20000 * 0.6 / 500000 = 0.024.
    options = preset('fewshot', 256, fine_tuning=True)
    assert options['ada_target'] == 0.6
    pipe = types.SimpleNamespace(p=torch.zeros([]))
    ada = AdaController(pipe, target=options['ada_target'], kimg=options['ada_kimg'])
    for _ in range(5000):                       # 5000 iterations of batch 4 = 20 kimg
        ada.accumulate(torch.ones(4))
        ada.step(4)
    assert float(pipe.p) == pytest.approx(0.024, rel=1e-4)   # p is float32


def dry_run(tiny, *args):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--iters', '1',
                                       '--dry-run', *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index('{'):])


def test_fewshot_mirrors_and_records_where_each_value_comes_from(tiny):
    config = dry_run(tiny)
    assert config['options']['cfg'] == 'fewshot' and config['mirror'] is True
    assert config['option_origin']['mirror'] == '--cfg fewshot'
    sources = config['preset_sources']
    assert 'ada_length 500000' in sources['ada_kimg'] and 'RandomHorizontalFlip' in sources['mirror']
    assert set(sources) >= {'batch', 'lr', 'gamma', 'ema_kimg', 'kimg', 'ada_target', 'mirror'}
    explicit = dry_run(tiny, '--no-mirror')
    assert explicit['mirror'] is False and explicit['option_origin']['mirror'] == 'command line'
    nvidia = dry_run(tiny, '--cfg', 'stylegan2')
    assert nvidia['mirror'] is False and nvidia['options']['ada_kimg'] == 100
    assert config['source_g'] == 'G_ema'


def test_source_g_picks_the_sources_training_g(tmp_path):
    G, D = HP.tiny_networks(seed=0)
    G_ema, _ = HP.tiny_networks(seed=1)
    path = str(tmp_path / 'both.pkl')
    save_snapshot(path, dict(G=G, D=D, G_ema=G_ema))
    _, chosen, _ = training.load_source(path, 'G')
    assert torch.equal(chosen.mapping.fc0.weight, G.mapping.fc0.weight)
    _, default, _ = training.load_source(path)
    assert torch.equal(default.mapping.fc0.weight, G_ema.mapping.fc0.weight)
    only_ema = str(tmp_path / 'ema.pkl')
    save_snapshot(only_ema, dict(D=D, G_ema=G_ema))
    with pytest.raises(training.UserError, match='--source-g G: .* holds no training G'):
        training.load_source(only_ema, 'G')
