"""genda end to end through `gda train` on tiny networks: only the adaptor, the last ToRGB and the
classifier train; at identity the adapted model is the source; the augmentation ramp owns p;
generation applies the adaptor (not the truncation); export folds it; genda + diffaugment."""

import json
import os
import pathlib

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import main
from gda_core.generate import open_model, render, seed_latents
from gda_core.plugins import default_manager
from gda_plugins.diffaugment import augment
from stylegan2_ada.training_loop import TrainingLoop

from gda_testkit import plugins as HP


def train(tiny, outdir, *args, iters=3):
    data, source = tiny
    return CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                     str(outdir), '--iters', str(iters), '--tick', '0.004',
                                     '--plugin', 'genda', *args])


def run_dir(outdir):
    return str(next(pathlib.Path(outdir).iterdir()))


def stats(outdir):
    with open(os.path.join(run_dir(outdir), 'stats.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def trained(tiny, tmp_path_factory):
    outdir = tmp_path_factory.mktemp('genda')
    result = train(tiny, outdir, '--lr', '0.01')
    assert result.exit_code == 0, result.output
    return outdir, stylegan2_ada.load(HP.snapshot_path(run_dir(outdir)))


def test_only_the_adaptor_the_last_torgb_and_the_classifier_train(tiny, trained):
    outdir, snap = trained
    source = stylegan2_ada.load(tiny[1])
    for net in ('G', 'D'):
        before = dict(source[net].named_parameters())
        for name, param in snap[net].named_parameters():
            changed = not torch.equal(param, before[name])
            assert changed == (net == 'G' and name.startswith('synthesis.b16.torgb.')), name
    modules = snap['gda']['loop']['modules']
    adaptor, classifier = modules['param_groups/genda/adaptor'], modules['param_groups/genda/classifier']
    assert adaptor['a'].shape == (6, 16) and not torch.equal(adaptor['a'], torch.ones(6, 16))
    assert not torch.equal(adaptor['b'], torch.zeros(6, 16))
    assert classifier['fc.weight'].shape == (1, 16)
    with open(os.path.join(run_dir(outdir), 'training_options.json')) as f:
        counts = {row['module']: row for row in json.load(f)['parameters']}
    assert counts['G.synthesis.b16']['trainable'] == sum(
        p.numel() for p in source['G'].synthesis.b16.torgb.parameters())
    assert counts['G.mapping']['trainable'] == counts['D.b4']['trainable'] == 0
    assert counts['genda.adaptor']['trainable'] == 2 * 6 * 16
    assert counts['genda.classifier']['trainable'] == 17


def test_the_ramp_owns_the_augmentation_probability(trained):
    outdir, _ = trained
    # kimg 2 is proposed, --iters 3 at batch 4 ends first: p = 0.6 * cur_nimg / 12.
    assert [round(entry['augment'], 6) for entry in stats(outdir)] == [0.0, 0.2, 0.4]


def test_generation_applies_the_adaptor_without_truncation_and_export_folds_it(trained, tmp_path):
    outdir, snap = trained
    network = HP.snapshot_path(run_dir(outdir))
    model = open_model(network, manager=default_manager(), need_source=True)
    adaptor, = model.nets.w_transforms('generate')
    assert model.nets.w_transforms('generate', source=True) == []        # 'adapted' only: the source is plain
    twin = snap['gda']['loop']['twins']['param_groups/genda/adaptor']
    assert torch.equal(adaptor.a, twin['a'])          # G_ema renders with the EMA twin
    z = seed_latents([0, 1, 2, 3], 16)
    expected = model.G.synthesis(adaptor(model.G.mapping(z, None)), noise_mode='const')
    assert torch.allclose(render(model, z), expected, atol=1e-6)

    result = CliRunner().invoke(main, ['export', '--network', network, '--out',
                                       str(tmp_path / 'G.pt')])
    assert result.exit_code == 0 and 'folded in: genda' in result.output, result.output
    plain = stylegan2_ada.load(str(tmp_path / 'G.pt'))['G_ema']
    assert torch.allclose(plain(z, None, noise_mode='const'), expected, atol=1e-5)


def test_at_identity_the_adapted_model_is_exactly_the_source(tiny, tmp_path, monkeypatch):
    # The run as `gda train` builds it, stopped before its first step: adaptor at identity.
    loops = []
    monkeypatch.setattr(TrainingLoop, 'run', lambda self, progress=None: loops.append(self))
    HP.train(tmp_path, *tiny, HP.manager(entry_points=True), plugins=['genda'])
    loop, = loops
    z = seed_latents(range(6), 16)
    c = torch.zeros([6, 0])
    adapted = loop.nets.synthesize('G_ema', z, c, noise_mode='const', mode='generate').img
    source = stylegan2_ada.load(tiny[1])['G_ema'].eval()
    assert torch.equal(adapted, loop.nets.synthesize(source, z, c, noise_mode='const',
                                                mode='generate').img)
    assert torch.equal(adapted, source(z, c, noise_mode='const'))


def test_genda_composes_with_diffaugment(tiny, tmp_path, monkeypatch):
    phases = []
    real_call = augment.DiffAugment.__call__

    def recording(self, img, it=None):
        phases.append((it.phase, round(it.augment_p, 6)))
        return real_call(self, img, it)
    monkeypatch.setattr(augment.DiffAugment, '__call__', recording)
    result = train(tiny, tmp_path, '--plugin', 'diffaugment', '--genda-aug-max', '0.3', iters=2)
    assert result.exit_code == 0, result.output
    assert {phase for phase, _ in phases} == {'Gmain', 'Dmain', 'Dreg'}
    assert {p for _, p in phases} == {0.0, 0.15}     # genda's ramp, seen by every D pass
    names = [entry['name'] for entry in
             stylegan2_ada.load(HP.snapshot_path(run_dir(tmp_path)))['gda']['plugins']]
    assert names == ['genda', 'diffaugment']


@pytest.mark.parametrize('args,message', [
    (['--genda-psi', '0'], '--genda-psi: must lie in (0, 1]'),
    (['--genda-aug-max', '1.5'], '--genda-aug-max: must lie in [0, 1]'),
    (['--aug', 'noaug'], "'genda' sets the augmentation probability, which needs --aug ada"),
    (['--plugin', 'patchd'], "both replace the D output"),
])
def test_misuse_is_a_one_line_error(tiny, tmp_path, args, message):
    result = train(tiny, tmp_path / 'runs', *args, iters=1)
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'runs').exists()


def test_genda_needs_a_source(tiny, tmp_path):
    result = CliRunner().invoke(main, ['train', '--data', tiny[0], '--source', 'none', '--outdir',
                                       str(tmp_path), '--iters', '1', '--plugin', 'genda',
                                       '--cbase', '128', '--cmax', '16', '--map', '2'])
    assert result.exit_code == 2
    assert "genda adapts a pre-trained generator; give --source" in result.output


def test_resume_continues_the_adaptor_classifier_and_ramp_exactly(tiny, tmp_path):
    # A fixed ramp length, so the straight and the split run share one schedule.
    fixed = ['--genda-ramp-kimg', '0.016']
    assert train(tiny, tmp_path / 'straight', *fixed, iters=4).exit_code == 0
    assert train(tiny, tmp_path / 'split', *fixed, iters=2).exit_code == 0
    result = CliRunner().invoke(main, ['train', '--resume', run_dir(tmp_path / 'split'),
                                       '--iters', '4'])
    assert result.exit_code == 0, result.output
    straight, split = (stylegan2_ada.load(HP.snapshot_path(run_dir(tmp_path / name)))
                       for name in ('straight', 'split'))
    for kind in ('modules', 'twins'):
        for key, state in straight['gda']['loop'][kind].items():
            for name, value in state.items():
                assert torch.equal(value, split['gda']['loop'][kind][key][name]), (key, name)
    assert [entry['augment'] for entry in stats(tmp_path / 'split')] == \
        [entry['augment'] for entry in stats(tmp_path / 'straight')]
