"""Fixtures for the hook tests: tiny data and source, and one recorded run with a probe plugin.

The probe implements every injection-point hook with a small, observable contribution and records
each call (with the run's mode), so that each test_hook_<name> can check its own hook end to end:
plugin -> host -> engine -> snapshot -> generate.
"""

import collections
import pathlib

import pytest
import torch

from gda_core.generate import open_model
from gda_hooks import Option, hookimpl
from stylegan2_ada.extensions import Conditioning, DHead, FreezePolicy, LatentBatch, ParamGroup, WTransform

from gda_testkit import plugins as HP

C_DIM = 3
PROBE_ITERS = 4


@pytest.fixture(scope='session')
def hp():
    return HP


@pytest.fixture(scope='session')
def tiny(tmp_path_factory):
    """(data folder of 6 images, tiny source snapshot path): session-wide here, for probe_run,
    in place of tests/conftest.py's per-module one."""
    root = tmp_path_factory.mktemp('tiny')
    return HP.write_images(root / 'data'), HP.write_source(root / 'source.pkl')


class Scale(torch.nn.Module):
    """W' = gamma * W per (out, in) channel pair: an AdaFM-like reparam that trains."""

    def __init__(self, weight):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(weight.shape[0], weight.shape[1], 1, 1))

    def forward(self, weight):
        return weight * self.gamma


class Offset(torch.nn.Module):
    """ws + offset (a buffer): a transform whose effect on images is visible."""

    def __init__(self, w_dim, value, calls):
        super().__init__()
        self.register_buffer('offset', torch.full([w_dim], value))
        self.calls = calls

    def forward(self, ws, it):
        self.calls.append('generate' if it is None else 'train')
        return ws + self.offset


class Head(torch.nn.Module):
    """An 'add' D head on b4.fc that records the features it received."""

    def __init__(self, channels, calls):
        super().__init__()
        self.linear = torch.nn.Linear(channels, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.calls = calls

    def forward(self, logits, feats, c, it):
        self.calls.append(dict(phase=it.phase, features=sorted(feats)))
        return self.linear(feats['b4.fc'])


class Probe:
    """One contribution per hook; every call is recorded in self.calls[hook]."""

    def __init__(self):
        self.calls = collections.defaultdict(list)

    def _modules(self, run):
        if not hasattr(run.ns, 'scale'):
            run.ns.scale = Scale(run.G.synthesis.b16.conv1.weight)
            run.ns.head = Head(run.D.b4.fc.weight.shape[0], self.calls['d_heads'])
            run.ns.both = Offset(run.G.w_dim, 0.5, self.calls['w_transforms/both'])
            run.ns.adapted = Offset(run.G.w_dim, 0.0, self.calls['w_transforms/adapted'])
        return run.ns

    @hookimpl
    def options(self):
        return [Option('weight', float, 0.01, 'Weight of the probe term'),
                Option('tag', str, 'x', 'A choice', choices=('x', 'y'))]

    @hookimpl
    def propose_defaults(self, options):
        self.calls['propose_defaults'].append(dict(options))
        return {'gamma': 3.0}

    @hookimpl
    def conditioning(self, run):
        calls = self.calls['conditioning']

        def real_c(raw_idx):
            calls.append(dict(mode=run.mode, kind='real_c', idx=raw_idx.tolist()))
            return torch.nn.functional.one_hot(raw_idx % C_DIM, C_DIM).float()

        def infer_c(n, rng):
            calls.append(dict(mode=run.mode, kind='infer_c', n=n))
            return torch.nn.functional.one_hot(torch.randint(C_DIM, [n], generator=rng), C_DIM).float()
        return Conditioning(C_DIM, real_c=real_c, infer_c=infer_c)

    @hookimpl
    def weight_reparam(self, run):
        return {'G.synthesis.b16.conv1': self._modules(run).scale}

    @hookimpl
    def freeze_policy(self, run):
        return FreezePolicy(frozen=lambda qualname: qualname.startswith('G.synthesis.b4.'))

    @hookimpl
    def param_groups(self, run):
        ns = self._modules(run)
        return [ParamGroup('scale', ns.scale, 'G', lr=0.01), ParamGroup('head', ns.head, 'D')]

    @hookimpl
    def d_heads(self, run):
        return [DHead('head', self._modules(run).head, mode='add', features=('b4.fc',))]

    @hookimpl
    def adv_loss(self, run):
        calls = self.calls['adv_loss']

        def hinge(kind, logits):
            calls.append(kind)
            if kind == 'G_fake':
                return -logits
            return torch.nn.functional.relu(1 - logits if kind == 'D_real' else 1 + logits)
        return hinge

    @hookimpl
    def w_transforms(self, run):
        ns = self._modules(run)
        return [WTransform('both', ns.both, target='both'),
                WTransform('adapted', ns.adapted, target='adapted', modes={'train'})]

    @hookimpl
    def latent_sampler(self, run):
        run.request_anchors()
        calls = self.calls['latent_sampler']

        def sample(it, n):
            calls.append(dict(index=it.index, phase=it.phase, n=n))
            if it.index % 2 == 0:
                return LatentBatch(run.near_anchors(n, 0.1, it.rng), mixing=False)
            return None
        return sample

    @hookimpl
    def select_branch(self, run):
        calls = self.calls['select_branch']

        def select(it):
            calls.append(it.index)
            return 'even' if it.index % 2 == 0 else 'odd'
        return select

    @hookimpl
    def augmentations(self, run):
        calls = self.calls['augmentations']

        def record(img, it):
            calls.append(dict(index=it.index, phase=it.phase, branch=it.branch, shape=list(img.shape)))
            return img
        return [record]

    @hookimpl
    def augment_p(self, run):
        def probability(it):
            self.calls['augment_p'].append(it.index)
            return 0.25
        return probability

    @hookimpl
    def g_loss_terms(self, run):
        def term(it):
            self.calls['g_loss_terms'].append(it.index)
            z = torch.randn([2, run.G.z_dim], generator=it.rng)
            return {'probe_term': run.options.weight * run.synthesize('G', z, it=it).img.square().mean()}
        return [term]

    @hookimpl
    def setup(self, run):
        self.calls['setup'].append(dict(mode=run.mode, has_G_ema=run.G_ema is not None,
                                        anchors=list(run.anchors.shape)))

    @hookimpl
    def on_tick(self, run, info):
        self.calls['on_tick'].append(info.tick)
        return {'ticked': float(info.tick)}

    @hookimpl
    def state_dict(self, run):
        return {'ticks': len(self.calls['on_tick']), 'vector': torch.arange(3.0)}

    @hookimpl
    def load_state_dict(self, run, state):
        self.calls['load_state_dict'].append(dict(mode=run.mode, state=state))

    @hookimpl
    def on_snapshot(self, run, info):
        self.calls['on_snapshot'].append(dict(exists=pathlib.Path(info.path).is_file(),
                                              iteration=info.iteration))


@pytest.fixture(scope='session')
def probe_run(tmp_path_factory, tiny):
    """A 4-iteration fine-tuning run with the probe, then the snapshot opened for generation."""
    data, source = tiny
    probe = Probe()
    manager = HP.manager(('probe', probe))
    outdir = tmp_path_factory.mktemp('probe')
    run_dir = HP.train(outdir, data, source, manager, plugins=['probe'],
                       iters=PROBE_ITERS, tick=0.008)
    snapshot = HP.snapshot_path(run_dir)
    train_calls = {hook: list(calls) for hook, calls in probe.calls.items()}
    model = open_model(snapshot, manager=manager, need_source=True)
    return dict(probe=probe, manager=manager, run_dir=run_dir, snapshot=snapshot, model=model,
                train_calls=train_calls, source=source, data=data)
