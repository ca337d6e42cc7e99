"""One test per construction hook, each checked end to end on the probe's recorded run."""

import json
import os

import torch

import stylegan2_ada
from gda_core.generate import pairs, render
from stylegan2_ada.reparam import get_weight_reparam

PHASES = {'Gmain', 'Greg', 'Dmain', 'Dreg'}


def _snapshot(probe_run):
    return stylegan2_ada.load(probe_run['snapshot'])


def _ticks(probe_run):
    with open(os.path.join(probe_run['run_dir'], 'stats.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_hook_conditioning(probe_run):
    snap = _snapshot(probe_run)
    # The engine added G's embedding: the snapshot is NVIDIA's conditional layout with c_dim 3.
    assert snap['G_ema'].c_dim == 3 and snap['G_ema'].init_kwargs['c_dim'] == 3
    assert 'mapping.embed.weight' in snap['G_ema'].state_dict()
    assert probe_run['model'].G_s.c_dim == 0   # the source stays unconditional
    real = [call for call in probe_run['train_calls']['conditioning'] if call['kind'] == 'real_c']
    assert real and all(0 <= i < 6 for call in real for i in call['idx'])   # raw indices
    # gda generate asks the plugin for c.
    before = len(probe_run['probe'].calls['conditioning'])
    c = probe_run['model'].default_c(5, seed=1)
    assert c.shape == (5, 3) and torch.equal(c.sum(1), torch.ones(5))
    assert probe_run['probe'].calls['conditioning'][before:] == [dict(mode='generate', kind='infer_c', n=5)]


def test_hook_weight_reparam(probe_run):
    model, loop = probe_run['model'], _snapshot(probe_run)['gda']['loop']
    trained_gamma = loop['modules']['param_groups/probe/scale']['gamma']
    assert not torch.allclose(trained_gamma, torch.ones_like(trained_gamma))   # it trained
    layer = model.G.synthesis.b16.conv1
    installed = get_weight_reparam(layer)
    assert installed is model.run.plugin('probe').ns.scale
    # Generation uses the EMA twin's values, and the reparam changes the images.
    assert torch.equal(installed.gamma, loop['twins']['param_groups/probe/scale']['gamma'])
    z = torch.randn([2, model.G.z_dim], generator=torch.Generator().manual_seed(0))
    with_reparam = render(model, z)
    installed.gamma.data.fill_(1.0)
    try:
        assert not torch.allclose(render(model, z), with_reparam)
    finally:
        installed.gamma.data.copy_(loop['twins']['param_groups/probe/scale']['gamma'])


def test_hook_freeze_policy(probe_run):
    source, tuned = stylegan2_ada.load(probe_run['source'])['G_ema'], _snapshot(probe_run)['G']
    before, after = source.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith('synthesis.b4.')
               and not k.endswith('noise_const'))
    assert not torch.equal(before['synthesis.b8.conv0.weight'], after['synthesis.b8.conv0.weight'])
    with open(os.path.join(probe_run['run_dir'], 'training_options.json')) as f:
        rows = {row['module']: row for row in json.load(f)['parameters']}
    assert rows['G.synthesis.b4']['trainable'] == 0 and rows['G.synthesis.b4']['frozen'] > 0
    assert rows['G.synthesis.b8']['trainable'] > 0


def test_hook_param_groups(probe_run):
    loop = _snapshot(probe_run)['gda']['loop']
    head = loop['modules']['param_groups/probe/head']
    assert head['linear.weight'].abs().sum() > 0          # the D-side group trained from zero
    assert 'param_groups/probe/scale' in loop['twins']    # the G-side group has an EMA twin
    assert 'param_groups/probe/head' not in loop['twins']
    with open(os.path.join(probe_run['run_dir'], 'training_options.json')) as f:
        rows = {row['module']: row for row in json.load(f)['parameters']}
    assert rows['probe.head']['trainable'] == 17 and rows['probe.scale']['trainable'] == 8 * 8


def test_hook_d_heads(probe_run):
    calls = probe_run['train_calls']['d_heads']
    assert {call['phase'] for call in calls} >= {'Gmain', 'Dmain', 'Dreg'}
    assert all(call['features'] == ['b4.fc'] for call in calls)   # only what the head asked for


def test_hook_adv_loss(probe_run):
    assert set(probe_run['train_calls']['adv_loss']) == {'G_fake', 'D_real', 'D_fake'}


def test_hook_w_transforms(probe_run):
    model, calls = probe_run['model'], probe_run['probe'].calls
    assert 'train' in probe_run['train_calls']['w_transforms/both']
    assert 'train' in probe_run['train_calls']['w_transforms/adapted']
    ns = model.run.plugin('probe').ns
    # Generate mode: the train-only transform is gone; the 'both' one is in both pipelines.
    assert model.nets.w_transforms('generate') == [ns.both]
    assert model.nets.w_transforms('generate', source=True) == [ns.both]
    adapted_before = len(calls['w_transforms/adapted'])
    z = torch.randn([3, model.G.z_dim], generator=torch.Generator().manual_seed(0))
    source_img, adapted_img = pairs(model, z)
    assert len(calls['w_transforms/adapted']) == adapted_before
    # The source image is G_s after the 'both' transform, not plain G_s.
    with torch.no_grad():
        ws = model.G_s.mapping(z, None)
        plain = model.G_s.synthesis(ws, noise_mode='const')
        shifted = model.G_s.synthesis(ws + 0.5, noise_mode='const')
    assert torch.allclose(source_img, shifted, atol=1e-6) and not torch.allclose(source_img, plain)
    assert adapted_img.shape == source_img.shape


def test_hook_latent_sampler(probe_run):
    calls = probe_run['train_calls']['latent_sampler']
    assert {call['phase'] for call in calls} == PHASES
    assert all(call['n'] == 4 for call in calls)   # the phase's global batch
    assert sorted({call['index'] for call in calls}) == list(range(4))


def test_hook_select_branch(probe_run):
    assert probe_run['train_calls']['select_branch'] == [0, 1, 2, 3]
    seen = {(call['index'], call['branch']) for call in probe_run['train_calls']['augmentations']}
    assert seen == {(0, 'even'), (1, 'odd'), (2, 'even'), (3, 'odd')}   # fixed per iteration


def test_hook_augmentations(probe_run):
    calls = probe_run['train_calls']['augmentations']
    assert {call['phase'] for call in calls} >= {'Gmain', 'Dmain', 'Dreg'}
    assert all(call['shape'][1:] == [3, 16, 16] for call in calls)


def test_hook_augment_p(probe_run):
    snap = _snapshot(probe_run)
    assert probe_run['train_calls']['augment_p'] == [0, 1, 2, 3]
    assert float(snap['augment_pipe'].p) == 0.25
    assert snap['gda']['loop']['ada'] is None          # the ADA controller is off
    assert all(tick['augment'] == 0.25 for tick in _ticks(probe_run))


def test_hook_g_loss_terms(probe_run):
    assert probe_run['train_calls']['g_loss_terms'] == [0, 1, 2, 3]   # once per iteration
    ticks = _ticks(probe_run)
    assert all('Loss/G/probe/probe_term' in tick['losses'] for tick in ticks)
    assert 0 < ticks[0]['losses']['Loss/G/probe/probe_term'] < 0.01 * 2   # weight x mean square
