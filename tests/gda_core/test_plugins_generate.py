"""Generation restores plugin modules under the training loop's own names, EMA values first."""

import torch

import stylegan2_ada
from gda_core.generate import open_model
from gda_hooks import hookimpl
from stylegan2_ada.extensions import DHead, ParamGroup, WTransform
from stylegan2_ada.reparam import get_weight_reparam

from gda_testkit import plugins as HP


class Bias(torch.nn.Module):
    def __init__(self, w_dim):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(w_dim))

    def forward(self, ws, it):
        return ws + self.bias


class Gain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones([]))

    def forward(self, weight):
        return weight * self.gain


class Adaptor(torch.nn.Module):
    """One EMA'd group holding a transform and a reparam as submodules (named once, by the group)."""

    def __init__(self, w_dim):
        super().__init__()
        self.transform = Bias(w_dim)
        self.reparam = Gain()


class Zero(torch.nn.Module):
    """A D head with a buffer and no parameter group: named by d_heads, never trained."""

    def __init__(self):
        super().__init__()
        self.register_buffer('scale', torch.zeros([]))

    def forward(self, logits, feats, c, it):
        return logits * self.scale


class Nested:
    def _modules(self, run):
        if not hasattr(run.ns, 'adaptor'):
            run.ns.adaptor = Adaptor(run.G.w_dim)
            run.ns.head = torch.nn.Linear(run.D.b4.fc.weight.shape[0], 1)
        return run.ns

    @hookimpl
    def weight_reparam(self, run):
        return {'G.synthesis.b16.conv1': self._modules(run).adaptor.reparam}

    @hookimpl
    def param_groups(self, run):
        ns = self._modules(run)
        return [ParamGroup('adaptor', ns.adaptor, lr=0.05), ParamGroup('head', ns.head, 'D')]

    @hookimpl
    def w_transforms(self, run):
        return [WTransform('bias', self._modules(run).adaptor.transform)]

    @hookimpl
    def d_heads(self, run):
        head = self._modules(run).head
        return [DHead('head', lambda logits, feats, c, it: head(feats['b4.fc']), 'add', ('b4.fc',)),
                DHead('zero', Zero(), 'add')]


def test_module_names_match_the_loops_and_generation_uses_the_ema_values(tiny, tmp_path):
    manager = HP.manager(('nested', Nested()))
    run_dir = HP.train(tmp_path, *tiny, manager, plugins=['nested'], iters=3)
    snapshot = HP.snapshot_path(run_dir)
    loop = stylegan2_ada.load(snapshot)['gda']['loop']
    model = open_model(snapshot, manager=manager)
    assert set(model.nets.modules) == set(loop['modules']) == {
        'param_groups/nested/adaptor', 'param_groups/nested/head', 'd_heads/nested/zero'}
    assert set(loop['twins']) == {'param_groups/nested/adaptor'}
    adaptor = model.run.plugin('nested').ns.adaptor
    live, twin = loop['modules']['param_groups/nested/adaptor'], loop['twins']['param_groups/nested/adaptor']
    assert not torch.equal(live['transform.bias'], twin['transform.bias'])   # EMA lags the live one
    assert torch.equal(adaptor.transform.bias, twin['transform.bias'])
    assert not adaptor.transform.bias.requires_grad and not adaptor.training
    assert get_weight_reparam(model.G.synthesis.b16.conv1) is adaptor.reparam
