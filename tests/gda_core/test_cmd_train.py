"""`gda train` end to end on tiny data: from scratch, fine-tuning, plugins, dry run, user errors."""

import json
import os
import re
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main

TINY = ['--cbase', '128', '--cmax', '16', '--map', '2', '--zdim', '16']


def write_images(folder, count=8, res=16, mode='RGB'):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    channels = 3 if mode == 'RGB' else 1
    for i in range(count):
        pixels = (rng.rand(res, res, channels) * 255).astype(np.uint8)
        PIL.Image.fromarray(pixels if channels == 3 else pixels[:, :, 0]).save(
            os.path.join(folder, f'{i}.png'))
    return str(folder)


def gda(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope='module')
def scratch_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('train')
    data = write_images(root / 'data')
    result = gda('train', '--data', data, '--source', 'none', '--outdir', root / 'runs', *TINY,
                 '--batch', 4, '--iters', 4, '--tick', 0.008, '--snap', 1)
    assert result.exit_code == 0, result.output
    run_dir = os.path.join(root / 'runs', os.listdir(root / 'runs')[0])
    return root, data, run_dir, result.output


def test_from_scratch_writes_the_run_directory(scratch_run):
    _, _, run_dir, output = scratch_run
    assert os.path.basename(run_dir) == '00000-data-auto-batch4'
    assert {'reals.png', 'fakes_init.png', 'fakes000000.png', 'stats.jsonl',
            'training_options.json', 'network-snapshot-000000.pkl'} <= set(os.listdir(run_dir))
    assert 'tick 2' in output and 'trainable' in output
    ticks = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl'))]
    assert [t['iteration'] for t in ticks] == [2, 4]
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert options['options']['batch'] == 4 and options['option_origin']['batch'] == 'command line'
    assert options['option_origin']['gamma'] == '--cfg auto'


def test_snapshot_loads_and_fine_tuning_runs(scratch_run, tmp_path):
    root, data, run_dir, _ = scratch_run
    snapshot = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    loaded = stylegan2_ada.load(snapshot)
    assert loaded['G_ema'].img_resolution == 16 and loaded['gda']['loop']['iteration'] == 4

    result = gda('train', '--data', data, '--source', snapshot, '--outdir', tmp_path, '--iters', 2,
                 '--tick', 0.004, '--snap', 1)
    assert result.exit_code == 0, result.output
    tuned_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    assert os.path.basename(tuned_dir).endswith('fewshot-batch4')
    tuned = stylegan2_ada.load(os.path.join(tuned_dir, 'network-snapshot-000000.pkl'))
    assert tuned['gda']['source']['sha256'] == loaded['origin']['sha256']
    assert tuned['gda']['source_G'] is not None
    # The source's own architecture was kept, and training changed the weights.
    assert tuned['G'].init_kwargs == loaded['G_ema'].init_kwargs
    before = loaded['G_ema'].synthesis.b16.conv1.weight
    assert not np.allclose(tuned['G'].synthesis.b16.conv1.weight.numpy(), before.numpy())
    # The run ends with the comparison: source and adapted on seeds 0-9 above the 8 training images,
    # three labelled rows of 16 px images upscaled to >= 768 px (5 x 160 px), white past the last one.
    comparison = np.asarray(PIL.Image.open(os.path.join(tuned_dir, 'comparison.png')))
    band = comparison.shape[1] - 800
    assert comparison.shape[0] == 3 * 80 and band > 0 and 'comparison.png' in result.output
    reals = comparison[160:, band:][::5, ::5]
    assert np.array_equal(reals[:, :16], np.asarray(PIL.Image.open(os.path.join(data, '0.png'))))
    assert (reals[:, 16 * 8:] == 255).all()


def test_without_source_and_data_the_bundled_demo_runs(scratch_run, tmp_path, monkeypatch):
    from gda_core import demo_data, demo_defaults
    _, data, run_dir, _ = scratch_run
    monkeypatch.setattr(demo_data, 'SOURCE_MODEL', os.path.join(run_dir, 'network-snapshot-000000.pkl'))
    monkeypatch.setattr(demo_data, 'TARGET_DIR', data)
    monkeypatch.setattr(demo_defaults, 'DEMO_ITERS', 2)
    result = gda('train', '--outdir', tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == demo_defaults.FIRST_LOG_LINE
    demo_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    assert demo_dir.endswith('-demo')
    assert {'comparison.png', 'fakes000000.png'} <= set(os.listdir(demo_dir))
    options = json.load(open(os.path.join(demo_dir, 'training_options.json')))
    assert options['options']['iters'] == 2 and options['source'] == demo_data.SOURCE_MODEL


def test_the_demo_says_how_to_build_its_source_when_it_is_missing(tmp_path, monkeypatch):
    from gda_core import demo_data
    monkeypatch.setattr(demo_data, 'SOURCE_MODEL', str(tmp_path / 'absent.pkl'))
    result = CliRunner().invoke(main, ['train', '--outdir', str(tmp_path / 'runs')])
    assert result.exit_code == 2 and 'train_source.sh' in result.output
    assert 'Traceback' not in result.output and not os.path.exists(tmp_path / 'runs')


def test_dry_run_prints_the_resolved_configuration(scratch_run, tmp_path):
    _, data, _, _ = scratch_run
    result = gda('train', '--data', data, '--source', 'none', '--outdir', tmp_path, *TINY,
                 '--iters', 3, '--gamma', 5, '--dry-run')
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config['options']['gamma'] == 5 and config['options']['kimg'] is None
    assert config['options']['batch'] == 32   # --cfg auto at 16 px
    assert not os.listdir(tmp_path)           # nothing written


@pytest.mark.parametrize('args,message', [
    (['--source', 'none'], '--data is required'),
    (['--data', 'DATA'], '--source is required'),
    (['--data', 'DATA', '--source', 'missing.pkl', '--iters', '1'], 'neither a file'),
    (['--data', 'DATA', '--source', 'none', '--iters', '1', '--batch', '6', '--batch-gpu', '4'],
     'must divide'),
    (['--data', 'DATA', '--source', 'none', '--aug', 'fixed', '--iters', '1'], 'needs --p'),
    (['--data', 'DATA', '--source', 'SNAP', '--cbase', '64', '--iters', '1'], "source's own"),
    (['--data', 'GRAY', '--source', 'SNAP', '--iters', '1'], 'gda dataset'),
    (['--data', 'DATA', '--source', 'none', '--cfg', 'huge'], "Invalid value for '--cfg'"),
    (['--data', 'DATA', '--source', 'SNAP', '--iters', '1', '--plugin', 'nope'],
     '--plugin nope: no such plugin; installed: '),
    (['--data', 'DATA', '--source', 'SNAP', '--iters', '1', '--freezed-layers', '2'],
     "--freezed-layers given, but plugin 'freezed' is not active; add --plugin freezed"),
    (['--data', 'DATA', '--source', 'SNAP', '--iters', '1', '--plugin', 'freezed',
      '--freezed-layers', 'all'], "'all' is not a valid integer"),
])
def test_user_errors_are_one_line_with_exit_code_2(scratch_run, tmp_path, args, message):
    _, data, run_dir, _ = scratch_run
    gray = write_images(tmp_path / 'gray', mode='L')
    replace = dict(DATA=data, SNAP=os.path.join(run_dir, 'network-snapshot-000000.pkl'), GRAY=gray)
    args = [replace.get(a, a) for a in args]
    result = CliRunner().invoke(main, ['train', '--outdir', str(tmp_path / 'runs')] + args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert 'Traceback' not in result.output
    assert not os.path.exists(tmp_path / 'runs') or not os.listdir(tmp_path / 'runs')


def test_plugins_are_recorded_in_the_options_and_the_snapshot(scratch_run, tmp_path):
    _, data, run_dir, _ = scratch_run
    source = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    result = gda('train', '--data', data, '--source', source, '--outdir', tmp_path, '--iters', 1,
                 '--plugin', 'freezed', '--freezed-layers', 2, '--plugin', 'diffaugment',
                 '--diffaugment-policy', 'color')
    assert result.exit_code == 0, result.output
    tuned_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    options = json.load(open(os.path.join(tuned_dir, 'training_options.json')))
    assert [(p['name'], p['distribution'], p['options']) for p in options['plugins']] == [
        ('freezed', 'gda', {'layers': 2}), ('diffaugment', 'gda', {'policy': 'color'})]
    assert options['plugins'][0]['option_origin'] == {'layers': 'command line'}
    rows = {row['module']: row for row in options['parameters']}
    assert rows['D.b16']['frozen'] > 0 and rows['D.b8']['frozen'] == 0
    saved = stylegan2_ada.load(os.path.join(tuned_dir, 'network-snapshot-000000.pkl'))['gda']['plugins']
    assert saved == [dict(name='freezed', distribution='gda', version='0.1.0', options={'layers': 2}, state={}),
                     dict(name='diffaugment', distribution='gda', version='0.1.0',
                          options={'policy': 'color'}, state={})]


def test_a_diverging_run_stops_with_one_line_and_writes_nothing_non_finite(scratch_run, tmp_path):
    """--lr 1e10: exit 3 with one line naming the iteration, the loss and what to try; no
    snapshot, NaN kept in stats.jsonl (the report marks it), the reason in log.txt."""
    _, data, run_dir, _ = scratch_run
    source = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    result = CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                       str(tmp_path), '--lr', '1e10', '--iters', '30', '--tick',
                                       '0.02', '--snap', '1'])
    assert result.exit_code == 3, result.output
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and 'Traceback' not in result.output
    assert re.match(r'Error: training diverged at iteration \d+: the loss Loss/\S+ became nan; '
                    r'nothing non-finite was saved and no snapshot had been written yet; try a '
                    r'lower --lr \(now 1e\+10\)', error[0]), error[0]
    diverged_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    assert not [name for name in os.listdir(diverged_dir) if name.startswith('network-snapshot')]
    assert 'comparison.png' not in os.listdir(diverged_dir)
    last = [json.loads(line) for line in open(os.path.join(diverged_dir, 'stats.jsonl'))][-1]
    assert any(np.isnan(value) for value in last['losses'].values())
    assert open(os.path.join(diverged_dir, 'log.txt')).read().splitlines()[-1] == error[0]


def test_a_corrupt_training_archive_is_one_line(tmp_path):
    images = write_images(tmp_path / 'images', count=4)
    archive = tmp_path / 'data.zip'
    with zipfile.ZipFile(archive, 'w') as out:
        for name in sorted(os.listdir(images)):
            out.write(os.path.join(images, name), name)
    with zipfile.ZipFile(archive) as check:
        offset = check.getinfo('2.png').header_offset + 30 + len('2.png')
    data = bytearray(archive.read_bytes())
    data[offset + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ['train', '--data', str(archive), '--source', 'none',
                                       '--outdir', str(tmp_path / 'runs'), *TINY, '--iters', '1'])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0] == (f'Error: dataset {archive}: member 2.png is corrupt (its CRC check '
                        f'fails); the archive is damaged (an interrupted download?): download or '
                        f'build it again')
    assert not os.path.exists(tmp_path / 'runs')


def test_records_show_the_sources_architecture_and_true_origins(scratch_run, tmp_path,
                                                                monkeypatch):
    """Fine-tuning a 2-layer-mapping source: --dry-run and training_options.json say map 2 from
    the source (not the fewshot preset's 8); the demo's own defaults are labelled 'demo'."""
    from gda_core import demo_data, demo_defaults
    _, data, run_dir, _ = scratch_run
    source = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    result = gda('train', '--data', data, '--source', source, '--outdir', tmp_path, '--iters', 1,
                 '--dry-run')
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    options, origin = config['options'], config['option_origin']
    assert (options['map'], options['zdim'], options['cbase'], options['cmax']) == (2, 16, 128, 16)
    assert options['mbstd'] == 4 and options['d_architecture'] == 'resnet'
    assert all(origin[key] == 'source' for key in ('map', 'zdim', 'cbase', 'cmax', 'mbstd',
                                                   'd_architecture'))
    assert 'fmaps' not in options and origin['iters'] == 'command line'

    monkeypatch.setattr(demo_data, 'SOURCE_MODEL', source)
    monkeypatch.setattr(demo_data, 'TARGET_DIR', data)
    result = gda('train', '--outdir', tmp_path, '--dry-run')
    assert result.exit_code == 0, result.output
    origin = json.loads(result.output)['option_origin']
    assert origin['iters'] == origin['tick'] == origin['snap'] == 'demo'
    assert origin['map'] == 'source' and origin['batch'] == '--cfg fewshot'
