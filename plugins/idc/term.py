"""The idc generator loss term: renders one batch through the frozen source and the adapted G and
compares their pairwise-similarity structure (CDC §3.1, with the official code's choices)."""

import torch

from stylegan2_ada.errors import UserError

from .choices import AUTO
from .distance import distance_consistency, pick_layers


def resolve_layers(spec, layer_names):
    """The candidate layers of `--idc-layers`: 'auto' = every synthesis layer but the first
    (b4.conv1, never used by CDC); otherwise comma-separated names or indices into `layer_names`
    (index 0 = b4.conv1, the few-shot repositories' numbering)."""
    if spec == AUTO:
        chosen = list(layer_names[1:])
    else:
        chosen = []
        for token in (t.strip() for t in spec.split(',')):
            name = layer_names[int(token)] if token.isdigit() and int(token) < len(layer_names) \
                else token
            if name not in layer_names:
                listed = ', '.join(f'{n} ({i})' for i, n in enumerate(layer_names))
                raise UserError(f'--idc-layers: {token!r} is not a layer of this generator; '
                                f'give names or indices from: {listed}')
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise UserError('--idc-layers: this generator has no layer after b4.conv1; name the '
                        'layers to use')
    return chosen


class DistanceConsistencyTerm:
    """fn(it) -> {'kl': weight * L_dist}, once per iteration; its samples come from it.rng."""

    def __init__(self, run):
        self.run = run
        self.layers = resolve_layers(run.options['layers'], run.G.synthesis.layer_names)
        if run.G_s is None:
            raise UserError('idc compares the adapted generator with its source, so it needs '
                            '--source (not none)')

    def __call__(self, it):
        run, options = self.run, self.run.options
        n = options['batch']
        z = torch.randn([n, run.G.z_dim], generator=it.rng)
        picks = pick_layers(self.layers, n, it.rng)
        c = run.gen_c(n, it)                     # one c for both passes
        names = sorted(set(picks))
        source = run.synthesize('source', z, c, it=it, noise_mode=options['noise'],
                                features=names).features
        target = run.synthesize('G', z, c, it=it, noise_mode=options['noise'],
                                features=names).features
        loss = distance_consistency(source, target, picks, options['direction'])
        return {'kl': loss * options['weight']}
