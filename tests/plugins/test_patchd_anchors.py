"""patchd's anchor regions and its run: the branch schedule, which latents are anchors, anchors in
snapshots and back on resume through the plugin's state hooks, the patch head in every D pass of
patch iterations only, `gda train --plugin idc --plugin patchd` (alone and composed), and errors."""

import json

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core import composition
from gda_core.cli import main
from gda_core.run_context import RunContext
from gda_plugins.patchd.head import PatchHead
from gda_plugins.patchd.schedule import AnchorSampler, BranchSchedule
from stylegan2_ada.errors import UserError

from gda_testkit import cdc as CDC
from gda_testkit import plugins as HP


def test_every_subspace_freq_th_iteration_is_image_level_and_reported():
    reported = []
    schedule = BranchSchedule(4)
    branches = []
    for index in range(12):
        it = CDC.iteration(index=index)
        it.report = lambda name, value: reported.append((name, value))
        branches.append(schedule(it))
    assert [i for i, b in enumerate(branches) if b == 'image'] == [0, 4, 8]   # probability 1/4
    assert set(branches) == {'image', 'patch'}
    assert reported == [('patchd/image_level', float(b == 'image')) for b in branches]
    assert {BranchSchedule(1)(CDC.iteration(index=i)) for i in range(5)} == {'image'}


class Anchors:
    """A stand-in for the run's anchor service, recording the calls."""

    def __init__(self):
        self.anchors = torch.randn(6, 16)

    def near_anchors(self, n, std, rng):
        picks = torch.randint(len(self.anchors), [n], generator=rng)
        return self.anchors[picks] + std * torch.randn([n, 16], generator=rng)


def test_image_level_adversarial_phases_sample_near_the_anchors_without_mixing():
    run = Anchors()
    sampler = AnchorSampler(run, std=0.1)
    for phase in ('Gmain', 'Dmain', 'Gboth', 'Dboth'):
        batch = sampler(CDC.iteration(index=8, phase=phase, branch='image'), 4)
        # The same draws, replayed: anchor indices, then N(0, 0.1^2) around them.
        rng = CDC.iteration(index=8).rng
        picks = torch.randint(6, [4], generator=rng)
        expected = run.anchors[picks] + 0.1 * torch.randn([4, 16], generator=rng)
        assert torch.equal(batch.z, expected) and batch.mixing is False and batch.c is None
    # Path length keeps CDC's ordinary mixed z; patch iterations use the core sampler.
    assert sampler(CDC.iteration(index=8, phase='Greg', branch='image'), 2) is None
    assert sampler(CDC.iteration(index=8, phase='Dreg', branch='image'), 4) is None
    for phase in ('Gmain', 'Dmain'):
        assert sampler(CDC.iteration(index=9, phase=phase, branch='patch'), 4) is None


def patchd_loop(monkeypatch, tmp_path, tiny, **options):
    data, source = tiny
    loop = CDC.built_loop(monkeypatch, tmp_path, data, source, ['patchd'],
                          plugin_options={'patchd': options})
    return loop, CDC.plugin_run(loop, 'latent_sampler', 'patchd')


def test_anchors_default_to_one_per_target_image_and_the_option_overrides(monkeypatch, tmp_path,
                                                                          tiny):
    loop, run = patchd_loop(monkeypatch, tmp_path / 'a', tiny)
    assert run.anchors.shape == (6, HP.Z_DIM)      # the tiny target set has 6 images
    z, _, mixing = loop._latents(CDC.iteration(index=4, phase='Dmain', branch='image'))
    distances = torch.cdist(z, run.anchors)        # each z is one anchor plus N(0, 0.1^2)
    assert (distances.min(dim=1).values < 0.1 * 8).all() and not mixing
    assert (distances.min(dim=1).values > 0).all()
    _, run = patchd_loop(monkeypatch, tmp_path / 'b', tiny, anchors=3)
    assert run.anchors.shape == (3, HP.Z_DIM)


def test_the_patch_head_serves_every_d_pass_of_patch_iterations_only(monkeypatch, tmp_path,
                                                                     tiny):
    calls = []
    forward = PatchHead.forward

    def recording(self, logits, feats, c=None, it=None):
        calls.append((it.index, it.phase))
        return forward(self, logits, feats, c, it)
    monkeypatch.setattr(PatchHead, 'forward', recording)
    data, source = tiny
    HP.train(tmp_path, data, source, HP.manager(entry_points=True), plugins=['patchd'], iters=5,
             gamma=1.0)
    # Iterations 0 and 4 are image-level. On the others: Gmain once, Dmain for fakes and reals.
    # (R1 runs every 16 iterations, here only in image-level iteration 0; test_patchd_head.py
    # checks R1 on the patch logits.)
    assert sorted(calls) == sorted((i, phase) for i in (1, 2, 3)
                                   for phase in ('Gmain', 'Dmain', 'Dmain'))


def test_anchors_are_saved_and_restored_on_resume_through_the_state_hooks(tmp_path, tiny):
    data, source = tiny
    run_dir = HP.train(tmp_path / 'runs', data, source, HP.manager(entry_points=True),
                       plugins=['patchd'], iters=2, seed=7)
    snapshot = stylegan2_ada.load(HP.snapshot_path(run_dir))
    gda = snapshot['gda']
    saved = gda['plugins'][0]['state']['anchors']
    assert torch.equal(saved, gda['loop']['anchors']) and saved.shape == (6, HP.Z_DIM)
    assert 'param_groups/patchd/head' in gda['loop']['modules']
    # A resumed run builds the plugins again (another seed would draw other anchors), then
    # load_state_dict puts the saved ones back, and the sampler draws around them.
    manager = HP.manager(entry_points=True)
    active = composition.activate(manager, ['patchd'], {})
    run = RunContext('resume', G=snapshot['G'], D=snapshot['D'], G_s=gda['source_G'],
                     dataset=[None] * 6, seed=99)
    run.add_plugin('patchd', active[0].options)
    ext = composition.build_extensions(manager, active, run)
    assert not torch.equal(run.draw_anchors(HP.Z_DIM), saved)
    manager.call('patchd', 'load_state_dict', run=run.for_plugin('patchd'),
                 state=gda['plugins'][0]['state'])
    assert torch.equal(run.anchors, saved)
    z = ext.latent_sampler[0](CDC.iteration(phase='Gmain', branch='image'), 4).z
    assert torch.cdist(z, saved).min(dim=1).values.max() < 0.1 * 8


def test_a_snapshot_with_another_anchor_count_is_refused(tmp_path, tiny):
    manager = HP.manager(entry_points=True)
    active = composition.activate(manager, ['patchd'], {'patchd': {'anchors': 4}})
    G, D = HP.tiny_networks()
    run = RunContext('resume', G=G, D=D, G_s=G, dataset=[None] * 6)
    run.add_plugin('patchd', active[0].options)
    composition.build_extensions(manager, active, run)
    with pytest.raises(UserError, match="the snapshot holds 6 anchors but --patchd-anchors is 4"):
        manager.call('patchd', 'load_state_dict', run=run.for_plugin('patchd'),
                     state={'anchors': torch.zeros(6, HP.Z_DIM)})


def cli(tmp_path, tiny, *args):
    data, source = tiny
    return CliRunner().invoke(main, ['train', '--data', data, '--source', source, '--outdir',
                                     str(tmp_path / 'runs'), *args])


def test_the_headline_command_runs_and_generates_pairs(tmp_path, tiny):
    result = cli(tmp_path, tiny, '--plugin', 'idc', '--plugin', 'patchd', '--iters', '8',
                 '--tick', '0.032', '--snap', '1')
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / 'runs').iterdir())
    stats = [json.loads(line) for line in open(run_dir / 'stats.jsonl')]
    losses = stats[-1]['losses']
    assert losses['patchd/image_level'] == pytest.approx(0.25)   # iterations 0 and 4 of 8
    assert 'Loss/G/idc/kl' in losses and 'Loss/D/loss' in losses
    options = json.load(open(run_dir / 'training_options.json'))
    assert [p['name'] for p in options['plugins']] == ['idc', 'patchd']
    assert options['options']['batch'] == 4 and options['options']['gamma'] == 10.0
    assert 'patchd.head' in result.output      # the head is counted among the trainables
    snapshot = HP.snapshot_path(run_dir)
    result = CliRunner().invoke(main, ['generate', '--network', snapshot, '--seeds', '0-1',
                                       '--pairs', '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['seed0000-pair.png',
                                                                   'seed0001-pair.png']


def test_it_composes_with_freezed_and_diffaugment(tmp_path, tiny):
    result = cli(tmp_path, tiny, '--plugin', 'patchd', '--plugin', 'freezed', '--plugin',
                 'diffaugment', '--plugin', 'idc', '--freezed-layers', '2', '--iters', '2',
                 '--patchd-subspace-freq', '2', '--snap', '1')
    assert result.exit_code == 0, result.output
    assert 'patchd.head' in result.output


@pytest.mark.parametrize('args,message', [
    (['--patchd-subspace-freq', '0'], '--patchd-subspace-freq: must be 1 or more, got 0'),
    (['--patchd-subspace-std', '0'], '--patchd-subspace-std: must be positive, got 0.0'),
    (['--patchd-anchors', '0'], '--patchd-anchors: must be 1 or more, got 0'),
    (['--patchd-block', '64'], "--patchd-block: give 'auto' or a D block name such as b64"),
    (['--patchd-block', 'b64'], "plugin 'patchd': --patchd-block b64: this D has no block "
                                "'b64'; choose one of b16, b8"),
    (['--patchd-highp', '3'], "plugin 'patchd': --patchd-highp 3: only 2 block outputs start "
                              "at b16 (b16, b8); lower it"),
])
def test_bad_values_are_usage_errors(tmp_path, tiny, args, message):
    result = cli(tmp_path, tiny, '--plugin', 'patchd', *args, '--iters', '1')
    assert result.exit_code == 2 and message in result.output, result.output
    assert 'Traceback' not in result.output
    assert not (tmp_path / 'runs').exists()


def test_the_log_and_options_file_show_the_effective_anchor_count(tmp_path, tiny):
    """--patchd-anchors left unset is the number of target images: the log prints 6, not None,
    and training_options.json keeps the option as given beside its effective value."""
    from gda_core import training
    data, source = tiny
    lines = []
    run_dir = training.run(HP.config(tmp_path, data, source, plugins=['patchd'], iters=1),
                           log=lines.append, manager=HP.manager(entry_points=True))
    plugin_line = next(line for line in lines if line.startswith('Plugin patchd'))
    assert '--patchd-anchors=6 ' in plugin_line and 'None' not in plugin_line
    with open(f'{run_dir}/training_options.json') as file:
        record = json.load(file)['plugins'][0]
    assert record['options']['anchors'] is None and record['effective_options']['anchors'] == 6
