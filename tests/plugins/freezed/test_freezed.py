"""freezed: D's first N layers in NVIDIA's counting keep their source values while the rest trains."""

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main
from stylegan2_ada.networks import Discriminator

from gda_testkit import plugins as HP


@pytest.mark.parametrize('architecture', ['resnet', 'skip', 'orig'])
def test_layer_order_is_nvidias_freeze_layers_counting(architecture):
    order = Discriminator(0, 32, 3, architecture=architecture, channel_base=256, channel_max=16).layer_order()
    for count in range(len(order) + 1):
        # NVIDIA's own Freeze-D (block_kwargs freeze_layers) stores exactly those layers as buffers.
        D = Discriminator(0, 32, 3, architecture=architecture, channel_base=256, channel_max=16,
                          block_kwargs=dict(freeze_layers=count))
        frozen = sorted({name.rsplit('.', 1)[0] for name, _ in D.named_buffers()
                         if name.endswith('.weight')})
        assert frozen == sorted(order[:count])
    assert order[:4] == (['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b32.skip'] if architecture == 'resnet'
                         else ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b16.fromrgb'] if architecture == 'skip'
                         else ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b16.conv0'])


def test_the_first_layers_stay_at_their_source_values(tiny, tmp_path):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'freezed', '--freezed-layers', '3',
                                       '--iters', '2', '--snap', '1'])
    assert result.exit_code == 0, result.output
    before = stylegan2_ada.load(source)['D'].state_dict()
    after = stylegan2_ada.load(HP.snapshot_path(next(tmp_path.iterdir())))['D'].state_dict()
    frozen = ('b16.fromrgb.', 'b16.conv0.', 'b16.conv1.')
    for key in before:
        if key.endswith(('.weight', '.bias')):
            same = torch.equal(before[key], after[key])
            assert same == key.startswith(frozen), key
    assert 'D.b16' in result.output and '1,784 frozen' in result.output


@pytest.mark.parametrize('value,message', [
    ('99', '--freezed-layers 99: this D has 7 layers (b16.fromrgb ... b8.skip)'),
    ('-1', '--freezed-layers: must be 0 or more, got -1'),
])
def test_bad_layer_counts_are_user_errors(tiny, tmp_path, value, message):
    data, source = tiny
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path / 'runs'), '--plugin', 'freezed',
                                       '--freezed-layers', value, '--iters', '1'])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('resolution,nvidia_count', [(256, 13), (1024, 19), (32, 4)])
def test_default_freezes_what_freezed_feature_loc_3_freezes(resolution, nvidia_count):
    # FreezeD trains progression.8/7/6 (4x4 epilogue, 8 and 16 px blocks) and `linear`: in NVIDIA's
    # counting of a resnet D that is freezing 3 * (log2(R) - 4) + 1 layers (every block >= 32 px).
    from plugins.freezed import feature_loc_frozen
    D = Discriminator(0, resolution, 3, channel_base=4096, channel_max=2)
    frozen = feature_loc_frozen(D)
    assert frozen == D.layer_order()[:nvidia_count]
    assert not any(path.startswith(('b16.', 'b8.', 'b4.')) for path in frozen)


def test_default_trains_only_the_last_three_blocks_and_the_output(tiny, tmp_path):
    data, source = tiny   # 16 px: FreezeD's three blocks are b16, b8 and b4; only fromrgb stays
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--plugin', 'freezed', '--iters', '2',
                                       '--snap', '1'])
    assert result.exit_code == 0, result.output
    before = stylegan2_ada.load(source)['D'].state_dict()
    after = stylegan2_ada.load(HP.snapshot_path(next(tmp_path.iterdir())))['D'].state_dict()
    for key in before:
        if key.endswith(('.weight', '.bias')):
            assert torch.equal(before[key], after[key]) == key.startswith('b16.fromrgb.'), key
