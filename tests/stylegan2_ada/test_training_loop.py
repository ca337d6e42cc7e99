"""The training engine: it learns, and every injection point of extensions.py is honoured."""

import json
import os

import numpy as np
import pytest
import torch

from stylegan2_ada.extensions import Extensions, LossTerm, ParamGroup, WTransform
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.training_config import resolve
from stylegan2_ada.training_loop import DataSampler, TrainingLoop, ema_beta


class ArrayDataset:
    """The dataset protocol the loop uses: len, [i] -> (uint8 CHW, label), get_label(i)."""

    def __init__(self, images, c_dim=0):
        self.images = images
        self.c_dim = c_dim

    def __len__(self):
        return len(self.images)

    def get_label(self, idx):
        label = np.zeros([self.c_dim], np.float32)
        if self.c_dim:
            label[idx % self.c_dim] = 1
        return label

    def __getitem__(self, idx):
        return self.images[idx], self.get_label(idx)


def bright_dataset(n=8, res=16, value=200):
    rng = np.random.RandomState(0)
    return ArrayDataset(np.clip(value + rng.randn(n, 3, res, res) * 10, 0, 255).astype(np.uint8))


def tiny_networks(res=16, c_dim=0, mbstd_num_channels=1):
    torch.manual_seed(1)
    G = Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=128,
                      channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2,
                                                           mbstd_num_channels=mbstd_num_channels))
    return G, D


def options(**overrides):
    opts, _ = resolve('auto', 16, dict(batch=4))
    opts.update(iters=4, kimg=None, batch_gpu=4, seed=0, aug='noaug', augpipe='bgc', p=None,
                tick=1000, snap=0, lr=0.0025)
    opts.update(overrides)
    return opts


def make_loop(tmp_path, ext=None, dataset=None, G=None, D=None, **overrides):
    if G is None:
        G, D = tiny_networks()
    return TrainingLoop(str(tmp_path), G, D, dataset or bright_dataset(), options(**overrides),
                        extensions=ext, log=lambda *a: None)


def fake_mean(loop):
    with torch.no_grad():
        z = torch.randn([16, 16], generator=torch.Generator().manual_seed(5))
        return loop.G_ema(z, None, noise_mode='const').mean().item()


def test_training_from_scratch_learns_the_data_brightness(tmp_path):
    target = 200 / 127.5 - 1   # the data's mean in [-1, 1]
    loop = make_loop(tmp_path, iters=20, ema_kimg=0.01, lr=0.01)
    before = abs(fake_mean(loop) - target)
    loop.run()
    after = abs(fake_mean(loop) - target)
    assert after < 0.5 * before, (before, after)
    assert os.path.exists(tmp_path / 'reals.png') and os.path.exists(tmp_path / 'fakes_init.png')
    stats = [json.loads(line) for line in open(tmp_path / 'stats.jsonl')]
    assert stats[-1]['iteration'] == 20 and 'Loss/G/loss' in stats[-1]['losses']


def test_stop_conditions_and_ticks(tmp_path):
    loop = make_loop(tmp_path, iters=None, kimg=0.012, tick=0.008)   # 3 iterations of batch 4
    loop.run()
    assert loop.iteration == 3 and loop.cur_nimg == 12 and loop.tick == 2


def test_lazy_regularisation_scales_lr_and_betas(tmp_path):
    loop = make_loop(tmp_path)
    G_opt = loop.phases[0].optimizer
    assert [p.name for p in loop.phases] == ['Gmain', 'Greg', 'Dmain', 'Dreg']
    assert G_opt.param_groups[0]['lr'] == pytest.approx(0.0025 * 4 / 5)
    assert G_opt.param_groups[0]['betas'][1] == pytest.approx(0.99 ** (4 / 5))
    assert loop.phases[3].optimizer.param_groups[0]['lr'] == pytest.approx(0.0025 * 16 / 17)


def test_ema_beta_matches_cdc_per_iteration_decay():
    assert ema_beta(dict(batch=4, ema_kimg=1.25, ema_rampup=None), 0) == pytest.approx(0.5 ** (32 / 10000))
    ramped = ema_beta(dict(batch=4, ema_kimg=10, ema_rampup=0.05), cur_nimg=1000)
    assert ramped == pytest.approx(0.5 ** (4 / 50))


def test_gradient_accumulation_equals_one_pass(tmp_path):
    grads = []
    for batch_gpu in (4, 2):
        G, D = tiny_networks(mbstd_num_channels=0)   # minibatch-std couples samples: leave it out
        loop = make_loop(tmp_path, G=G, D=D, iters=1, batch_gpu=batch_gpu, style_mixing=0.0,
                         G_reg_interval=None, D_reg_interval=None, pl_weight=0.0, gamma=0.0)
        assert [p.name for p in loop.phases] == ['Gboth', 'Dboth']
        for module in G.modules():     # deterministic passes
            if hasattr(module, 'use_noise'):
                module.use_noise = False
        for phase in loop.phases:
            phase.optimizer.step = lambda: None
        loop.step()
        grads.append(torch.cat([p.grad.flatten() for p in list(G.parameters()) + list(D.parameters())
                                if p.grad is not None]))
    assert grads[0].shape == grads[1].shape
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_ada_adjusts_p_every_four_iterations(tmp_path):
    loop = make_loop(tmp_path, aug='ada', p=0.5, ada_kimg=0.1, iters=8)
    ps = []
    for _ in range(8):
        loop.step()
        ps.append(float(loop.augment_pipe.p))
    step = 4 * 4 / (0.1 * 1000)
    assert ps[0] == ps[1] == ps[2] == 0.5
    assert abs(ps[3] - 0.5) == pytest.approx(step)
    assert abs(ps[7] - ps[3]) == pytest.approx(step) or ps[7] == 0


def test_fixed_augmentation_keeps_p(tmp_path):
    loop = make_loop(tmp_path, aug='fixed', p=0.3, iters=4)
    loop.run()
    assert float(loop.augment_pipe.p) == pytest.approx(0.3) and loop.ada is None


def test_data_sampler_is_reproducible_and_resumable():
    a = DataSampler(5, seed=3)
    first = a.next_batch(7) + a.next_batch(6)
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))
    b = DataSampler(5, seed=3)
    b.next_batch(7)
    c = DataSampler(5, seed=3)
    c.position = b.position
    assert c.next_batch(6) == first[7:]


# -- injection points -----------------------------------------------------------------------------

def test_begin_iteration_and_branch_reach_every_phase(tmp_path):
    seen = []
    ext = Extensions()
    ext.begin_iteration.append(lambda it: setattr(it, 'branch', 'patch' if it.index % 2 else 'image'))

    def head(it, logits, feats, img, c):
        seen.append((it.index, it.branch))
        return logits
    ext.d_heads.append(head)
    loop = make_loop(tmp_path, ext=ext, iters=2)
    loop.run()
    assert {(0, 'image'), (1, 'patch')} == set(seen)


def test_sample_z_and_mixing_switch(tmp_path):
    calls = []
    ext = Extensions()
    ext.begin_iteration.append(lambda it: setattr(it, 'mixing', False))

    def sampler(it, batch_size, phase):
        calls.append(phase)
        return torch.zeros([batch_size, 16])
    ext.sample_z.append(sampler)
    used = []
    ext.loss_terms.append(LossTerm('probe', lambda it, gen: used.append(gen['z']) or 0.0 * gen['img'].sum()))
    loop = make_loop(tmp_path, ext=ext, iters=1, style_mixing=1.0)
    loop.run()
    assert calls == ['Gmain', 'Greg', 'Dmain', 'Dreg']
    assert torch.count_nonzero(used[0]) == 0


def test_w_transform_targets(tmp_path):
    ext = Extensions()
    ext.w_transforms.append(WTransform(lambda ws, it: ws * 0 + 1, target='adapted'))
    ext.w_transforms.append(WTransform(lambda ws, it: ws * 2, target='both'))
    ws = torch.randn([1, 3, 4])
    assert torch.equal(ext.transform_ws(ws, None), torch.full_like(ws, 2))
    assert torch.equal(ext.transform_ws(ws, None, source=True), ws * 2)
    with pytest.raises(ValueError, match='target'):
        WTransform(lambda ws, it: ws, target='source')
    seen = []
    ext2 = Extensions(w_transforms=[WTransform(lambda ws, it: seen.append(1) or ws)])
    make_loop(tmp_path, ext=ext2, iters=1).run()
    assert seen


def test_g_and_d_features_reach_loss_terms_and_heads(tmp_path):
    got = {}
    ext = Extensions(g_features=['b8.conv1'], d_features=['b16'])

    def term(it, gen):
        got['g'] = sorted(gen['features'])
        got['d'] = sorted(gen['d_features'])
        return gen['features']['b8.conv1'].square().mean() * 0.01
    ext.loss_terms.append(LossTerm('feat', term))
    loop = make_loop(tmp_path, ext=ext, iters=1)
    loop.step()
    assert got == {'g': ['b8.conv1'], 'd': ['b16']}
    assert 'Loss/feat' in loop.stats.collect()


def test_d_heads_may_return_patch_logits_and_adv_loss_is_replaceable(tmp_path):
    kinds = []
    ext = Extensions(d_features=['b16'])
    ext.d_heads.append(lambda it, logits, feats, img, c: feats['b16'][:, :1])   # [N,1,8,8]

    def hinge(kind, logits):
        kinds.append((kind, tuple(logits.shape)))
        return torch.relu(1 + logits) if kind == 'D_fake' else torch.relu(1 - logits)
    ext.adv_loss = hinge
    make_loop(tmp_path, ext=ext, iters=1, gamma=1.0).step()
    assert {k for k, _ in kinds} == {'G_fake', 'D_fake', 'D_real'}
    assert all(shape == (4, 1, 8, 8) for _, shape in kinds)


def test_augmentations_chain_after_the_pipe(tmp_path):
    order = []
    ext = Extensions()
    ext.augment.append(lambda img, it: order.append('a') or img)
    ext.augment.append(lambda img, it: order.append('b') or img.flip(3))
    make_loop(tmp_path, ext=ext, iters=1).step()
    assert order[:2] == ['a', 'b']


def test_augment_probability_owner_disables_ada(tmp_path):
    ext = Extensions(augment_p=lambda it: min(0.6, 0.1 * (it.index + 1)))
    loop = make_loop(tmp_path, ext=ext, aug='ada', iters=3)
    assert loop.ada is None
    loop.run()
    assert float(loop.augment_pipe.p) == pytest.approx(0.3)


def test_freeze_policies_unite_and_param_groups_train(tmp_path):
    head = torch.nn.Linear(16, 1)
    before_head = head.weight.detach().clone()
    ext = Extensions()
    ext.trainable.append(lambda net, name, p: not (net == 'G' and name.startswith('mapping')))
    ext.trainable.append(lambda net, name, p: not (net == 'D' and name.startswith('b16')))
    ext.trainable.append(lambda net, name, p: True)   # cannot undo another plugin's freeze
    ext.param_groups.append(ParamGroup('head', list(head.parameters()), network='D', lr_multiplier=2))
    ext.loss_terms.append(LossTerm('head', lambda it, gen: head(gen['d_features']['b4.fc']).mean(), phase='G'))
    ext.d_features.append('b4.fc')
    G, D = tiny_networks()
    frozen = {n: p.detach().clone() for n, p in list(G.mapping.named_parameters())}
    frozen_d = D.b16.conv0.weight.detach().clone()
    trained = G.synthesis.b16.conv1.weight.detach().clone()
    ext.loss_terms.append(LossTerm('d_head', lambda it, d: head(d['real_features']['b4.fc']).mean(), phase='D'))
    loop = make_loop(tmp_path, ext=ext, G=G, D=D, iters=2)
    loop.run()
    assert all(torch.equal(p, frozen[n]) for n, p in G.mapping.named_parameters())
    assert torch.equal(D.b16.conv0.weight, frozen_d)
    assert not torch.equal(G.synthesis.b16.conv1.weight, trained)
    assert not torch.equal(head.weight, before_head)
    assert loop.phases[2].optimizer.param_groups[1]['lr'] == pytest.approx(2 * 0.0025 * 16 / 17)


def test_on_tick_receives_the_tick_entry(tmp_path):
    ticks = []
    ext = Extensions(on_tick=[ticks.append])
    make_loop(tmp_path, ext=ext, iters=2, tick=0.004).run()
    assert [t['iteration'] for t in ticks] == [1, 2]


def test_snapshot_callback_and_loop_state_roundtrip(tmp_path):
    written = []
    loop = make_loop(tmp_path, aug='ada', p=0.2, iters=3, snap=1, tick=0.004)
    loop.save_snapshot = lambda path, lp: written.append((path, lp.loop_state()))
    loop.run()
    assert [os.path.basename(p) for p, _ in written] == ['network-snapshot-000000.pkl'] * 3
    state = written[-1][1]
    assert state['iteration'] == 3 and state['cur_nimg'] == 12 and state['sampler_position'] == 12
    other = make_loop(tmp_path / 'b', aug='ada', p=0.2)
    other.load_loop_state(state)
    assert other.iteration == 3 and other.sampler.position == 12
    assert float(other.augment_pipe.p) == pytest.approx(float(loop.augment_pipe.p))


def test_conditional_training_samples_labels_from_data(tmp_path):
    G, D = tiny_networks(c_dim=3)
    data = ArrayDataset(bright_dataset().images, c_dim=3)
    loop = make_loop(tmp_path, G=G, D=D, dataset=data, iters=1)
    _, c = loop._global_latents(None, 'Gmain')
    assert c.shape == (4, 3) and torch.all(c.sum(1) == 1)
    loop.run()
