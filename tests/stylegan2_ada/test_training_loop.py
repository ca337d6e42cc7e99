"""The training engine: it learns, resumes exactly, and offers every injection point of
docs/hooks.md §4 (one test per point, each with a throwaway callable or module)."""

import json
import os

import numpy as np
import pytest
import torch

from stylegan2_ada.errors import TrainingDiverged, UserError
from stylegan2_ada.extensions import (EXCLUSIVE, Conditioning, ConflictError, DHead, Extensions,
                                      FreezePolicy, Hook, Iteration, LatentBatch, ParamGroup,
                                      SnapshotInfo, TickInfo, WTransform)
from stylegan2_ada.networks import Discriminator, Generator
from stylegan2_ada.reparam import get_weight_reparam
from stylegan2_ada.training_config import resolve
from stylegan2_ada.training_options import TrainingOptions
from stylegan2_ada.distributed import Distributed
from stylegan2_ada.training_loop import TrainingLoop
from stylegan2_ada.training_step import DataSampler, ema_beta, iteration_rng


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


class MirroredDataset(ArrayDataset):
    """Items 0..n-1 and n..2n-1 show the same n raw images (as --mirror does)."""

    def __init__(self, images):
        super().__init__(np.concatenate([images, images[..., ::-1]]))
        self.raw_count = len(images)

    def raw_index(self, idx):
        return idx % self.raw_count


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
    return TrainingOptions(**opts)


def make_loop(tmp_path, ext=None, dataset=None, G=None, D=None, **overrides):
    if G is None:
        G, D = tiny_networks()
    return TrainingLoop(str(tmp_path), G, D, dataset or bright_dataset(), options(**overrides),
                        extensions=ext, log=lambda *a: None)


def fake_it(index=0):
    """An iteration context outside the loop (for the loop's samplers)."""
    return Iteration(index=index, cur_nimg=0, batch_size=4, device=torch.device('cpu'),
                     rng=iteration_rng(0, index))


def fake_mean(loop):
    with torch.no_grad():
        z = torch.randn([16, 16], generator=torch.Generator().manual_seed(5))
        return loop.G_ema(z, None, noise_mode='const').mean().item()


class Scale(torch.nn.Module):
    """A throwaway weight reparam: W -> gamma * W, with gamma = 1 at init."""

    def __init__(self):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones([]))

    def forward(self, weight):
        return self.gamma * weight


class Shift(torch.nn.Module):
    """A throwaway w transform: ws + shift, recording the phase of every call."""

    def __init__(self, w_dim=16):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros([w_dim]))
        self.phases = []

    def forward(self, ws, it):
        self.phases.append(it.phase if it is not None else None)
        return ws + self.shift


# -- the engine -----------------------------------------------------------------------------------

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
    assert ema_beta(TrainingOptions(batch=4, ema_kimg=1.25, ema_rampup=None), 0) == pytest.approx(0.5 ** (32 / 10000))
    ramped = ema_beta(TrainingOptions(batch=4, ema_kimg=10, ema_rampup=0.05), cur_nimg=1000)
    assert ramped == pytest.approx(0.5 ** (4 / 50))


def test_gradient_accumulation_equals_one_pass(tmp_path):
    grads, calls = [], []
    for batch_gpu in (4, 2):
        G, D = tiny_networks(mbstd_num_channels=0)   # minibatch-std couples samples: leave it out
        term = Hook(lambda it: calls.append(it.index) or
                    {'l2': 0.1 * G.synthesis.b4.const.square().sum()}, owner='probe')
        loop = make_loop(tmp_path, Extensions(g_loss_terms=[term]), G=G, D=D, iters=1,
                         batch_gpu=batch_gpu, style_mixing=0.0, G_reg_interval=None,
                         D_reg_interval=None, pl_weight=0.0, gamma=0.0)
        assert [p.name for p in loop.phases] == ['Gboth', 'Dboth']
        for module in G.modules():     # deterministic passes
            if hasattr(module, 'use_noise'):
                module.use_noise = False
        for phase in loop.phases:
            phase.optimizer.step = lambda: None
        loop.step()
        grads.append(torch.cat([p.grad.flatten() for p in list(G.parameters()) + list(D.parameters())
                                if p.grad is not None]))
    assert calls == [0, 0]   # once per iteration, whatever the number of rounds
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
    loop = make_loop(tmp_path, aug='fixed', p=0.3, iters=2)
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


def test_conditional_training_samples_labels_from_data(tmp_path):
    G, D = tiny_networks(c_dim=3)
    data = ArrayDataset(bright_dataset().images, c_dim=3)
    loop = make_loop(tmp_path, G=G, D=D, dataset=data, iters=1)
    c = loop.gen_c(4, fake_it())
    assert c.shape == (4, 3) and torch.all(c.sum(1) == 1)
    loop.run()


def test_global_latents_are_split_by_rank(tmp_path):
    """z is drawn for the global batch from it.rng; each rank takes its strided slice (docs/resume-and-processes.md)."""
    slices = []
    for rank in (0, 1):
        loop = make_loop(tmp_path)
        loop.dist = Distributed(rank=rank, world_size=2)
        slices.append(loop._latents(fake_it(7))[0])
    whole = make_loop(tmp_path)._latents(fake_it(7))[0]
    assert torch.equal(torch.stack(slices, 1).flatten(0, 1), whole)   # rank r: items r, r+2, ..


def test_exact_resume_from_loop_state(tmp_path):
    """Stopping after 2 iterations and resuming gives the uninterrupted run's weights, plugin
    module and EMA twin included (optimisers, sampler, RNG, plugin state all restored)."""
    def run(iterations, state=None, weights=None):
        G, D = tiny_networks()
        shift = Shift()
        ext = Extensions(w_transforms=[WTransform('shift', shift)],
                         param_groups=[ParamGroup('shift', shift, ema=True)])
        loop = make_loop(tmp_path, ext, G=G, D=D, aug='ada', p=0.1, ada_kimg=0.1, iters=4)
        if state is not None:
            for net, sd in zip((loop.G, loop.D, loop.G_ema), weights):
                net.load_state_dict(sd)
            loop.load_loop_state(state)
        for _ in range(iterations):
            loop.step()
        return loop, shift
    straight, straight_shift = run(4)
    half, _ = run(2)
    state = half.loop_state()
    weights = [{k: v.clone() for k, v in net.state_dict().items()}
               for net in (half.G, half.D, half.G_ema)]
    assert state['iteration'] == 2 and state['sampler_position'] == 8
    assert set(state['modules']) == {'param_groups/param_groups[0]/shift'}
    assert set(state['twins']) == {'param_groups/param_groups[0]/shift'}
    resumed, resumed_shift = run(2, state, weights)
    for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(straight_shift.shift, resumed_shift.shift)
    assert torch.equal(straight.nets.twin(straight_shift).shift, resumed.nets.twin(resumed_shift).shift)
    assert float(straight.augment_pipe.p) == float(resumed.augment_pipe.p)


def test_loop_state_without_a_plugin_module_is_refused(tmp_path):
    shift = Shift()
    ext = Extensions(w_transforms=[WTransform('shift', shift)], param_groups=[ParamGroup('s', shift)])
    state = make_loop(tmp_path).loop_state()
    with pytest.raises(UserError, match='no module state for param_groups/param_groups\\[0\\]/s'):
        make_loop(tmp_path, ext).load_loop_state(state)


# -- the iteration context ------------------------------------------------------------------------

def test_iteration_context(tmp_path):
    seen = []

    def term(it):
        seen.append((it.index, it.cur_nimg, it.batch_size, it.batch_gpu, it.phase, it.device,
                     it.augment_p, dict(it.scratch)))
        it.scratch['x'] = 1
        it.report('probe/value', torch.tensor(2.0))
        return {}
    loop = make_loop(tmp_path, Extensions(g_loss_terms=[term]), batch_gpu=2)
    loop.step()
    loop.step()
    cpu = torch.device('cpu')   # scratch is empty again in every iteration
    assert seen == [(0, 0, 4, 2, 'Gmain', cpu, 0.0, {}), (1, 4, 4, 2, 'Gmain', cpu, 0.0, {})]
    draws = [torch.randint(1000, [4], generator=iteration_rng(0, i)) for i in (0, 0, 1)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert loop.stats.collect()['probe/value'] == 2.0


# -- the injection points, one test each ----------------------------------------------------------

@pytest.mark.parametrize('field', EXCLUSIVE)
def test_exclusive_points_refuse_two_owners(tmp_path, field):
    def item(owner):
        if field == 'conditioning':
            return Conditioning(2, real_c=lambda idx: torch.zeros([len(idx), 2]), owner=owner)
        return Hook(lambda *args: None, owner=owner)
    ext = Extensions(**{field: [item('alpha'), item('beta')]})
    with pytest.raises(ConflictError, match=f"'alpha' and 'beta' both provide '{field}'"):
        make_loop(tmp_path, ext, aug='ada')


def test_conditioning(tmp_path):
    asked = []

    def real_c(raw_idx):
        asked.append(raw_idx.clone())
        return torch.nn.functional.one_hot(raw_idx % 3, 3).float()
    data = MirroredDataset(bright_dataset(n=4).images)
    ext = Extensions(conditioning=[Conditioning(3, real_c, owner='prior')])
    loop = make_loop(tmp_path, ext, dataset=data, iters=1)
    assert loop.G.c_dim == 3 and loop.G.init_kwargs['c_dim'] == 3 and loop.G_ema.c_dim == 3
    assert loop.G.mapping.embed.weight.shape == (16, 3) and loop.D.c_dim == 0
    loop.run()
    assert asked and all(idx.dtype == torch.int64 and int(idx.max()) < 4 for idx in asked)
    G, D = tiny_networks(c_dim=2)
    with pytest.raises(ConflictError, match="'prior' conditions the run"):
        make_loop(tmp_path, ext, G=G, D=D)


def test_conditioning_gen_c_owner(tmp_path):
    gen_calls = []

    def gen_c(n, it):
        gen_calls.append((n, it.phase))
        return torch.ones([n, 2])
    ext = Extensions(conditioning=[Conditioning(2, lambda idx: torch.zeros([len(idx), 2]), gen_c)])
    make_loop(tmp_path, ext).step()
    assert gen_calls == [(4, 'Gmain'), (4, 'Greg'), (4, 'Dmain'), (4, 'Dreg')]


def test_weight_reparam(tmp_path):
    g_scale, d_scale, plus, times = Scale(), Scale(), Hook(lambda w: w + 1), Hook(lambda w: w * 2)
    ext = Extensions(weight_reparam=[{'G.synthesis.b16.conv1': g_scale, 'D.b16.conv0': d_scale},
                                     {'G.synthesis.b8.conv0': plus},
                                     {'G.synthesis.b8.conv0': times}],
                     param_groups=[ParamGroup('g', g_scale), ParamGroup('d', d_scale, network='D')])
    G, D = tiny_networks()
    keys = list(G.state_dict()) + list(D.state_dict())
    loop = make_loop(tmp_path, ext, G=G, D=D, iters=2, ema_rampup=None)
    layer = G.synthesis.b8.conv0
    assert torch.equal(get_weight_reparam(layer)(layer.weight), (layer.weight + 1) * 2)   # plugin order
    loop.run()
    assert g_scale.gamma.item() != 1 and d_scale.gamma.item() != 1   # gradients reach f
    twin = get_weight_reparam(loop.G_ema.synthesis.b16.conv1)
    assert twin is loop.nets.twin(g_scale) and twin is not g_scale
    assert 1 != twin.gamma.item() != g_scale.gamma.item()            # an EMA of gamma
    assert list(G.state_dict()) + list(D.state_dict()) == keys
    with pytest.raises(UserError, match="'G.synthesis.b32.conv0', which is not a layer"):
        make_loop(tmp_path, Extensions(weight_reparam=[{'G.synthesis.b32.conv0': Scale()}]))


def test_freeze_policy(tmp_path):
    policies = [FreezePolicy(lambda q: q.startswith('G.mapping.'), owner='a'),
                FreezePolicy(lambda q: q.startswith('D.b16.'), requires=['G.synthesis.*'], owner='b'),
                FreezePolicy(lambda q: False, owner='c')]   # cannot undo another plugin's freeze
    G, D = tiny_networks()
    frozen = {n: p.detach().clone() for n, p in G.mapping.named_parameters()}
    frozen_d = D.b16.conv0.weight.detach().clone()
    trained = G.synthesis.b16.conv1.weight.detach().clone()
    loop = make_loop(tmp_path, Extensions(freeze_policy=policies), G=G, D=D, iters=2)
    in_optimizer = {id(p) for phase in loop.phases for g in phase.optimizer.param_groups
                    for p in g['params']}
    assert not any(id(p) in in_optimizer for p in G.mapping.parameters())
    loop.run()
    assert all(torch.equal(p, frozen[n]) for n, p in G.mapping.named_parameters())
    assert torch.equal(D.b16.conv0.weight, frozen_d)
    assert not torch.equal(G.synthesis.b16.conv1.weight, trained)
    assert not any(p.requires_grad for p in list(G.parameters()) + list(D.parameters()))
    conflict = [FreezePolicy(lambda q: q.startswith('G.'), owner='genda'),
                FreezePolicy(lambda q: False, requires=['G.mapping.fc0.weight'], owner='disp')]
    with pytest.raises(ConflictError, match="'disp' requires G.mapping.fc0.weight to train but 'genda'"):
        make_loop(tmp_path, Extensions(freeze_policy=conflict))
    with pytest.raises(UserError, match="requires 'G.nothing'"):
        make_loop(tmp_path, Extensions(freeze_policy=[FreezePolicy(lambda q: False, ['G.nothing'])]))


def test_a_side_with_nothing_trainable_skips_its_phases(tmp_path):
    G, D = tiny_networks()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    loop = make_loop(tmp_path, Extensions(freeze_policy=[FreezePolicy(lambda q: q.startswith('D.'))]),
                     G=G, D=D, iters=1)
    assert [p.name for p in loop.phases] == ['Gmain', 'Greg']
    loop.run()
    assert all(torch.equal(v, before[k]) for k, v in D.state_dict().items())


def test_param_groups(tmp_path):
    head, late, live = torch.nn.Linear(16, 1), Shift(), Shift()
    ext = Extensions(
        param_groups=[ParamGroup('head', head, network='D', lr_multiplier=2, owner='p'),
                      ParamGroup('late', late, lr=0.01, betas=(0.5, 0.9), lazy_reg=False,
                                 start_iteration=2),
                      ParamGroup('live', live, ema=False)],
        d_heads=[DHead('head', lambda logits, feats, c, it: head(feats['b4.fc']), mode='add',
                       features=['b4.fc'])],
        w_transforms=[WTransform('late', late), WTransform('live', live)])
    loop = make_loop(tmp_path, ext, iters=3)
    G_opt, D_opt = loop.phases[0].optimizer, loop.phases[2].optimizer
    assert D_opt.param_groups[1]['lr'] == pytest.approx(2 * 0.0025 * 16 / 17)
    assert G_opt.param_groups[1]['lr'] == 0.01 and G_opt.param_groups[1]['betas'] == (0.5, 0.9)
    assert loop.nets.twin(live) is live and loop.nets.twin(late) is not late
    head_before = head.weight.detach().clone()
    loop.step()
    loop.step()
    assert not torch.equal(head.weight, head_before)
    assert torch.count_nonzero(late.shift) == 0 and not late.shift.requires_grad
    assert not G_opt.state.get(late.shift)                       # no Adam state before the start
    assert torch.count_nonzero(live.shift) > 0
    loop.step()                                                  # iteration 2: the group starts
    assert torch.count_nonzero(late.shift) > 0 and G_opt.state[late.shift]['step'] == 1
    G, D = tiny_networks()
    with pytest.raises(ConflictError, match='holds a parameter of the core network G'):
        make_loop(tmp_path, Extensions(param_groups=[ParamGroup('x', G.mapping)]), G=G, D=D)
    twice = [ParamGroup('a', head, owner='one'), ParamGroup('b', head, owner='two')]
    message = "group 'b' \\(two\\) holds a parameter of parameter group 'a' \\(one\\)"
    with pytest.raises(ConflictError, match=message):
        make_loop(tmp_path, Extensions(param_groups=twice))


def test_d_heads(tmp_path):
    seen = []

    def patch(logits, feats, c, it):
        seen.append(('patch', it.branch, tuple(sorted(feats))))
        return feats['b16'][:, :1]                      # [N, 1, 8, 8] patch logits

    def add(logits, feats, c, it):
        seen.append(('add', it.branch, tuple(sorted(feats))))
        return torch.ones([logits.shape[0]])
    shapes = []

    def hinge(kind, logits):
        shapes.append(tuple(logits.shape))
        return torch.relu(1 + logits) if kind == 'D_fake' else torch.relu(1 - logits)
    ext = Extensions(d_heads=[DHead('patch', patch, features=['b16'], branches={'patch'}),
                              DHead('plus', add, mode='add', features=['b4.fc'])],
                     select_branch=[lambda it: 'patch' if it.index % 2 else 'image'],
                     adv_loss=[hinge])
    loop = make_loop(tmp_path, ext, iters=2)
    loop.step()
    assert set(seen) == {('add', 'image', ('b4.fc',))} and set(shapes) == {(4, 1)}
    seen.clear()
    shapes.clear()
    loop.step()
    assert set(seen) == {('patch', 'patch', ('b16', 'b4.fc')), ('add', 'patch', ('b16', 'b4.fc'))}
    assert set(shapes) == {(4, 1, 8, 8)}
    clash = Extensions(d_heads=[DHead('a', patch, owner='x'),
                                DHead('b', patch, branches={'patch'}, owner='y')])
    with pytest.raises(ConflictError, match="'a' \\(x\\) and 'b' \\(y\\) both replace"):
        make_loop(tmp_path, clash)
    with pytest.raises(UserError, match="reads \\['b64'\\]"):
        make_loop(tmp_path, Extensions(d_heads=[DHead('far', patch, features=['b64'])]))


def test_adv_loss(tmp_path):
    kinds = []

    def hinge(kind, logits):
        kinds.append(kind)
        return torch.relu(1 + logits) if kind == 'D_fake' else torch.relu(1 - logits)
    loop = make_loop(tmp_path, Extensions(adv_loss=[hinge]), iters=1)
    loop.step()
    assert kinds == ['G_fake', 'D_fake', 'D_real']
    assert 'Loss/D/loss' in loop.stats.collect()


def test_w_transforms(tmp_path):
    train_only, both = Shift(), Shift()
    ext = Extensions(w_transforms=[WTransform('t', train_only, modes={'train'}),
                                   WTransform('b', both, target='both')],
                     param_groups=[ParamGroup('t', train_only)])
    loop = make_loop(tmp_path, ext, iters=1)
    loop.step()
    assert train_only.phases == both.phases == ['Gmain', 'Greg', 'Dmain']
    assert torch.count_nonzero(train_only.shift) > 0             # gradients reach the transform
    train_only.phases.clear()
    both.phases.clear()
    loop.save_fakes('fakes.png')                                 # 'generate' mode, G_ema
    assert train_only.phases == [] and both.phases == [None]
    source, _ = tiny_networks()
    z = torch.randn([2, 16])
    out = loop.nets.synthesize(source, z, features=['b8.conv1'])
    assert train_only.phases == [] and both.phases == [None, None]
    assert out.img.shape == (2, 3, 16, 16) and list(out.features) == ['b8.conv1']
    with pytest.raises(ValueError, match='modes'):
        WTransform('x', both, modes={'sample'})


def test_latent_sampler(tmp_path):
    calls, ws_seen = [], {}

    def sampler(it, n):
        calls.append((it.phase, n))
        if it.phase == 'Gmain':
            return LatentBatch(torch.zeros([n, 16]), mixing=False)
        return None

    def record(ws, it):
        ws_seen.setdefault(it.phase, ws.detach().clone())
        return ws
    ext = Extensions(latent_sampler=[sampler], w_transforms=[WTransform('rec', record)])
    make_loop(tmp_path, ext, style_mixing=1.0).step()
    assert calls == [('Gmain', 4), ('Greg', 4), ('Dmain', 4), ('Dreg', 4)]
    gmain = ws_seen['Gmain']
    assert torch.equal(gmain, gmain[:1, :1].expand_as(gmain))    # one z, no mixing
    assert not torch.equal(ws_seen['Dmain'][0], ws_seen['Dmain'][1])


def test_select_branch(tmp_path):
    calls, branches = [], []
    ext = Extensions(select_branch=[lambda it: calls.append(it.index) or f'b{it.index}'],
                     g_loss_terms=[lambda it: branches.append((it.index, it.branch)) or {}],
                     augmentations=[lambda img, it: branches.append((it.index, it.branch)) or img])
    make_loop(tmp_path, ext, iters=2).run()
    assert calls == [0, 1]   # once per iteration; the branch holds for every phase
    assert {index for index, _ in branches} == {0, 1}
    assert all(branch == f'b{index}' for index, branch in branches)


def test_augmentations_chain_before_the_pipe(tmp_path):
    order = []
    ext = Extensions(augmentations=[lambda img, it: order.append('a') or img,
                                    lambda img, it: order.append('b') or img.flip(3)])
    loop = make_loop(tmp_path, ext, aug='fixed', p=0.2, iters=1)
    pipe_forward = loop.augment_pipe.forward
    loop.augment_pipe.forward = lambda img, *a: order.append('pipe') or pipe_forward(img, *a)
    loop.step()
    # Gmain, Greg (no D pass), Dmain fakes + reals, Dreg reals: a, b, then the pipe, every time.
    assert order == ['a', 'b', 'pipe'] * 4


def test_augment_p(tmp_path):
    seen = []
    ext = Extensions(augment_p=[lambda it: min(0.6, 0.1 * (it.index + 1))],
                     g_loss_terms=[lambda it: seen.append(it.augment_p) or {}])
    loop = make_loop(tmp_path, ext, aug='ada', iters=3)
    assert loop.ada is None
    loop.run()
    assert seen == pytest.approx([0.1, 0.2, 0.3]) and float(loop.augment_pipe.p) == pytest.approx(0.3)
    message = "'genda' sets the augmentation probability, which needs --aug ada"
    with pytest.raises(UserError, match=message):
        make_loop(tmp_path, Extensions(augment_p=[Hook(lambda it: 0.5, owner='genda')]), aug='noaug')


def test_g_loss_terms(tmp_path):
    def first_step(make_terms):
        G, D = tiny_networks()
        loop = make_loop(tmp_path, Extensions(g_loss_terms=make_terms(G)), G=G, D=D,
                         G_reg_interval=None, D_reg_interval=None)
        before = G.synthesis.b4.const.detach().clone()
        loop.step()   # Gboth keeps G's gradients after its step (only D's are reset later)
        return loop, before, G.synthesis.b4.const.grad
    _, _, plain = first_step(lambda G: [])
    loop, before, grad = first_step(lambda G: [
        Hook(lambda it: {'l2': 3.0 * G.synthesis.b4.const.square().sum(),
                         'const': torch.tensor(1.5)}, owner='ewc'),
        Hook(lambda it: {}, owner='idle')])
    assert torch.allclose(grad, plain + 6.0 * before, atol=1e-5)   # gain 1, added once
    stats = loop.stats.collect()
    assert stats['Loss/G/ewc/const'] == 1.5 and 'Loss/G/ewc/l2' in stats
    assert not any(name.startswith('Loss/G/idle') for name in stats)


def test_on_tick(tmp_path):
    ticks = []

    def on_tick(info):
        ticks.append(info)
        return {'seen': info.iteration}
    make_loop(tmp_path, Extensions(on_tick=[Hook(on_tick, 'watch')]), iters=2, tick=0.004).run()
    assert [t.iteration for t in ticks] == [1, 2] and isinstance(ticks[0], TickInfo)
    assert ticks[0].run_dir == str(tmp_path) and 'Loss/G/loss' in ticks[0].stats
    stats = [json.loads(line) for line in open(tmp_path / 'stats.jsonl')]
    assert [entry['watch/seen'] for entry in stats] == [1, 2]


def test_on_snapshot(tmp_path):
    infos = []

    def save(path, loop):
        with open(path, 'w') as f:
            json.dump(loop.loop_state()['iteration'], f)
    loop = make_loop(tmp_path, Extensions(on_snapshot=[lambda info: infos.append(
        (info, os.path.exists(info.path)))]), iters=2, snap=1, tick=0.004)
    loop.save_snapshot = save
    loop.run()
    assert [(i.iteration, exists) for i, exists in infos] == [(1, True), (2, True)]
    assert isinstance(infos[0][0], SnapshotInfo) and infos[0][0].kimg == 0.004


def test_a_non_finite_loss_stops_the_run_before_its_snapshot(tmp_path):
    """A loss term that turns NaN at iteration 3: the tick that saw it stops the run with one
    message naming the iteration and the loss; the last snapshot written is the finite one of
    iteration 3, and stats.jsonl keeps the NaN for the report."""
    snapshots = []

    def save(path, loop):
        snapshots.append(loop.iteration)
    boom = Hook(lambda it: {'boom': torch.tensor(float('nan') if it.index >= 3 else 0.0)},
                owner='test')
    loop = make_loop(tmp_path, Extensions(g_loss_terms=[boom]), iters=6, tick=0.004, snap=1)
    loop.save_snapshot = save
    with pytest.raises(TrainingDiverged) as error:
        loop.run()
    assert snapshots == [1, 2, 3] and loop.iteration == 4
    message = str(error.value)
    assert message.startswith('training diverged at iteration 4: the loss Loss/G/test/boom became nan')
    assert 'network-snapshot-000000.pkl (iteration 3) stays the newest valid snapshot' in message
    assert '--lr (now 0.0025)' in message and '\n' not in message
    stats = [json.loads(line) for line in open(tmp_path / 'stats.jsonl')]
    assert [entry['iteration'] for entry in stats] == [1, 2, 3, 4]
    assert np.isnan(stats[-1]['losses']['Loss/G/test/boom'])


def test_non_finite_weights_stop_the_run_too(tmp_path):
    """G_ema takes no part in the losses: only the weight check can see it go non-finite."""
    def poison(info):
        if info.iteration == 2:
            with torch.no_grad():
                loop.G_ema.synthesis.b4.const[0, 0, 0] = float('inf')
    loop = make_loop(tmp_path, Extensions(on_tick=[Hook(poison, 'test')]), iters=6, tick=0.004)
    with pytest.raises(TrainingDiverged, match='at iteration 3: the weights of G_ema became non-finite'):
        loop.run()


def test_divergence_checks_cost_no_sync_per_step(tmp_path, monkeypatch):
    """Reporting keeps the first non-finite iteration on the device: no .item()/.tolist() per
    step; the tick's collect makes the one transfer."""
    loop = make_loop(tmp_path, iters=2, tick=1000)
    transfers = []
    for name in ('item', 'tolist'):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _o=original, _n=name: (
            transfers.append(_n), _o(self))[1])
    loop.stats.iteration = 0
    loop.stats.report('Loss/x', torch.tensor([1.0, float('nan')]))
    loop.stats.report('Loss/x', torch.tensor([2.0]))
    assert transfers == []
    assert np.isnan(loop.stats.collect()['Loss/x']) and loop.stats.first_non_finite == {'Loss/x': 0}
    assert transfers == ['tolist']
