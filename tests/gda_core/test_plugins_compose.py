"""Composition: --plugin order decides chains; conflicts are errors found before any work starts."""

import os

import pytest
import torch
from click.testing import CliRunner

import stylegan2_ada
from gda_core.cli import _Group
from gda_core.cmd_train import make_train_command
from gda_hooks import hookimpl
from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import ConflictError, DHead, FreezePolicy, ParamGroup, WTransform

from gda_testkit import plugins as HP


class Identity(torch.nn.Module):
    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, ws, it):
        self.log.append(('w', self.name))
        return ws


class Chained:
    """A w-transform and an augmentation that log their plugin's name when called."""

    def __init__(self, log):
        self.log = log

    @hookimpl
    def w_transforms(self, run):
        return [WTransform('identity', Identity(run.name, self.log))]

    @hookimpl
    def augmentations(self, run):
        def augment(img, it):
            self.log.append(('aug', run.name))
            return img
        return [augment]


@pytest.mark.parametrize('order', [['a', 'b'], ['b', 'a']])
def test_chains_follow_the_command_line_order(tiny, tmp_path, order):
    log = []
    manager = HP.manager(('a', Chained(log)), ('b', Chained(log)))
    run_dir = HP.train(tmp_path, *tiny, manager, plugins=order, iters=1)
    transforms = [name for kind, name in log if kind == 'w']
    augments = [name for kind, name in log if kind == 'aug']
    assert transforms[:2] == order and transforms == order * (len(transforms) // 2)
    assert augments[:2] == order and augments == order * (len(augments) // 2)
    saved = stylegan2_ada.load(HP.snapshot_path(run_dir))['gda']['plugins']
    assert [p['name'] for p in saved] == order   # restored in this order by generate


def provider(**hooks):
    """A plugin object whose hooks return the given values (callables get `run`)."""
    namespace = {}
    for hook, value in hooks.items():
        def implementation(self, run, _value=value):
            return _value(run)
        implementation.__name__ = hook
        namespace[hook] = hookimpl(implementation)
    return type('Provider', (), namespace)()


def linear_head(run):
    return torch.nn.Linear(run.D.b4.fc.weight.shape[0], 1)


CONFLICTS = {
    'adv_loss': (dict(adv_loss=lambda run: (lambda kind, logits: logits)),) * 2,
    'latent_sampler': (dict(latent_sampler=lambda run: (lambda it, n: None)),) * 2,
    'select_branch': (dict(select_branch=lambda run: (lambda it: None)),) * 2,
    'augment_p': (dict(augment_p=lambda run: (lambda it: 0.1)),) * 2,
    'replace heads on one branch': (
        dict(d_heads=lambda run: [DHead('h1', linear_head(run), 'replace', ('b4.fc',), {'patch'})]),
        dict(d_heads=lambda run: [DHead('h2', linear_head(run), 'replace', ('b4.fc',), None)])),
    'requires vs frozen': (
        dict(freeze_policy=lambda run: FreezePolicy(lambda q: q.startswith('G.synthesis.b16.torgb'))),
        dict(freeze_policy=lambda run: FreezePolicy(lambda q: False, requires=['G.synthesis.b16.torgb.*']))),
    'a core parameter in a group': (
        dict(param_groups=lambda run: [ParamGroup('stolen', run.G.synthesis.b16.torgb)]),
        dict()),
    'anchor counts': (
        dict(select_branch=lambda run: run.request_anchors(3)),
        dict(latent_sampler=lambda run: run.request_anchors())),
}
MESSAGES = {
    'adv_loss': "'first' and 'second' both provide 'adv_loss'",
    'latent_sampler': "'first' and 'second' both provide 'latent_sampler'",
    'select_branch': "'first' and 'second' both provide 'select_branch'",
    'augment_p': "'first' and 'second' both provide 'augment_p'",
    'replace heads on one branch': "D heads 'h1' (first) and 'h2' (second) both replace the D output",
    'requires vs frozen': "'second' requires G.synthesis.b16.torgb.weight to train but 'first' freezes it",
    'a core parameter in a group': "parameter group 'stolen' (first) holds a parameter of the core network G",
    'anchor counts': "plugins disagree on the number of latent anchors ('first' want 3; 'second' want 6)",
}


@pytest.mark.parametrize('case', sorted(CONFLICTS))
def test_conflicts_are_found_before_any_work(tiny, tmp_path, case):
    first, second = CONFLICTS[case]
    manager = HP.manager(('first', provider(**first)), ('second', provider(**second)))
    with pytest.raises(UserError) as info:
        HP.train(tmp_path / 'runs', *tiny, manager, plugins=['first', 'second'])
    assert MESSAGES[case] in str(info.value)
    assert isinstance(info.value, ConflictError)
    assert not os.path.exists(tmp_path / 'runs')   # no run directory, nothing trained


def test_a_conflict_is_one_line_with_exit_code_2_on_the_command_line(tiny, tmp_path):
    first, second = CONFLICTS['adv_loss']
    manager = HP.manager(('first', provider(**first)), ('second', provider(**second)))
    group = _Group(commands={'train': make_train_command(manager)})
    data, source = tiny
    result = CliRunner().invoke(group, ['train', '--data', data, '--source', source, '--outdir',
                                        str(tmp_path), '--iters', '1', '--plugin', 'first',
                                        '--plugin', 'second'])
    assert result.exit_code == 2
    assert result.stderr.count('\n') == 1 and result.stderr.startswith('Error: ')
    assert 'Traceback' not in result.output and not os.listdir(tmp_path)


class Proposer:
    def __init__(self, proposals):
        self.proposals = proposals

    @hookimpl
    def propose_defaults(self, options):
        return self.proposals


def test_disagreeing_proposals_are_a_conflict_unless_the_user_decides(tiny, tmp_path):
    manager = HP.manager(('one', Proposer({'gamma': 3.0, 'lr': 0.001})),
                         ('two', Proposer({'gamma': 5.0, 'lr': 0.001})))
    config = HP.config(tmp_path, *tiny, plugins=['one', 'two'])
    from gda_core.training import prepare
    with pytest.raises(UserError, match="plugins 'one' and 'two' propose different values for --gamma"):
        prepare(config, manager)
    config['options']['gamma'] = 7.0
    plan = prepare(config, manager)
    assert plan['opts'].gamma == 7.0 and plan['opts'].lr == 0.001   # agreeing values are fine
    assert plan['origin']['lr'] == 'plugin one'


def test_an_augmentation_probability_owner_needs_ada(tiny, tmp_path):
    manager = HP.manager(('ramp', provider(augment_p=lambda run: (lambda it: 0.1))))
    with pytest.raises(UserError, match="'ramp' sets the augmentation probability, which needs --aug ada"):
        HP.train(tmp_path / 'runs', *tiny, manager, plugins=['ramp'], aug='noaug')
    assert not os.path.exists(tmp_path / 'runs')


@pytest.mark.parametrize('plugins,message', [
    (['a', 'a'], '--plugin a is given more than once'),
    (['nope'], '--plugin nope: no such plugin; installed: a, b'),
])
def test_plugin_names_are_checked(tiny, tmp_path, plugins, message):
    manager = HP.manager(('a', provider()), ('b', provider()))
    with pytest.raises(UserError, match=message):
        HP.train(tmp_path, *tiny, manager, plugins=plugins)
