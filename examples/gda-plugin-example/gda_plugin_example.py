"""example: keep the adapted generator's mean colour on the target images' mean colour.

A small but real gda plugin, written the way any method plugin is: it declares options, does its
one-off work in `setup`, adds a generator loss term, and saves what it computed so that resumed runs
and `gda generate` need no dataset. It imports only gda_hooks and public gda/stylegan2_ada API.
"""

import torch

from gda_hooks import Option, hookimpl


@hookimpl
def options():
    return [Option('weight', float, 1.0, 'Weight of the mean-colour term'),
            Option('samples', int, 4, 'Images rendered per iteration for the term')]


@hookimpl
def setup(run):
    """The target images' mean colour per channel in [-1, 1], computed once from the raw images."""
    images = torch.stack([torch.as_tensor(run.dataset.raw_image(i)) for i in range(len(run.dataset))])
    run.ns.target_colour = (images.to(torch.float32) / 127.5 - 1).mean(dim=[0, 2, 3]).to(run.device)


@hookimpl
def g_loss_terms(run):
    def colour(it):
        z = torch.randn([run.options['samples'], run.G.z_dim], generator=it.rng)
        images = run.synthesize('G', z, it=it).img
        distance = (images.mean(dim=[0, 2, 3]) - run.ns.target_colour).square().sum()
        return {'colour': run.options['weight'] * distance}
    return [colour]


@hookimpl
def state_dict(run):
    return {'target_colour': run.ns.target_colour.cpu()}


@hookimpl
def load_state_dict(run, state):
    run.ns.target_colour = state['target_colour'].to(run.device)
