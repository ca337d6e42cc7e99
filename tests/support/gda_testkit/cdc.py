"""Test helpers for the CDC plugins (idc, patchd): a run built by the real host path, stopped
before its first iteration, and hand-made Iteration objects.

`from gda_testkit import cdc as CDC`.
"""

import torch

from stylegan2_ada.extensions import Iteration
from stylegan2_ada.training_loop import TrainingLoop
from stylegan2_ada.training_step import iteration_rng

from gda_testkit import plugins as HP


def built_loop(monkeypatch, outdir, data, source, plugins, plugin_options=None, **overrides):
    """The TrainingLoop of a `gda train` run with `plugins`, built by gda_core.training.run with
    every hook applied (setup included) but stopped before the first iteration."""
    captured = []
    with monkeypatch.context() as patch:
        patch.setattr(TrainingLoop, 'run', lambda self, progress=None: captured.append(self))
        HP.train(outdir, data, source, HP.manager(entry_points=True), plugins=plugins,
                 plugin_options=plugin_options, **overrides)
    return captured[0]


def plugin_run(loop, field, owner):
    """The `run` view a plugin's contribution to `field` holds (its PluginRun)."""
    for item in getattr(loop.ext, field):
        if item.owner == owner:
            return getattr(item, 'fn', item).run
    raise LookupError(f'{owner} contributes nothing to {field}')


def iteration(index=0, phase='Gmain', branch=None, seed=0, batch=4):
    """An Iteration as the loop builds it (it.rng seeded from (seed, index))."""
    return Iteration(index=index, cur_nimg=index * batch, batch_size=batch,
                     device=torch.device('cpu'), rng=iteration_rng(seed, index), batch_gpu=batch,
                     phase=phase, branch=branch)
