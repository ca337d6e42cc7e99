"""How metrics render a network: generate(z, c) for the adapted pipeline, pairs(z) for SCS.

pairs(z) -> (G_source's images, G_adapted's images) for the same z, both in [-1, 1]. Plain
networks are rendered as they are (default_pairs, evaluation.default_generate). A snapshot that
names plugins is rendered through them by the plugin host (gda_core.generate: its latent
transforms go to the source and the adapted pipeline as docs/hooks.md's `w_transforms` assigns them), exactly as
`gda generate` and `gda generate --pairs` render it.
"""

import torch


def default_pairs(source_G, adapted_G, truncation_psi=1.0, noise_mode='const'):
    """pairs(z) of two plain generators; an unconditional one gets no c, a conditional one zeros."""
    def render(G, z):
        c = torch.zeros([len(z), G.c_dim], device=z.device)
        return G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def pairs(z):
        return render(source_G, z), render(adapted_G, z)
    return pairs


def plugin_pipelines(path, device, truncation_psi=1.0, noise_mode='random', source_G=None):
    """(generate, pairs or None) of a snapshot rendered through its plugins by the plugin host.

    source_G replaces the snapshot's stored source generator (it still gets the 'both' transforms).
    """
    from .. import generate as host  # only snapshots that name plugins need the plugin host

    model = host.open_model(path, device=device)
    if source_G is not None:
        model.G_s = source_G.to(model.device).eval().requires_grad_(False)
    return model_pipelines(model, truncation_psi, noise_mode)


def model_pipelines(model, truncation_psi=1.0, noise_mode='random'):
    """(generate, pairs or None) of a model the plugin host opened (gda_core.generate.Model: a
    snapshot's, or a training run's live networks), rendered through its plugins."""
    from .. import generate as host

    def generate(z, c):
        return host.render(model, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
    extensions = getattr(model, 'extensions', None)
    if extensions is not None and extensions.exclusive('conditioning') is not None:
        generate.infer_c = model.default_c   # the plugin draws c itself (disp's priors), not labels

    def pairs(z):
        return host.pairs(model, z, truncation_psi=truncation_psi, noise_mode='const')
    return generate, (pairs if model.G_s is not None else None)
