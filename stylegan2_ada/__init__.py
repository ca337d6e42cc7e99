"""Our own StyleGAN2-ADA: networks, ops, augmentation, losses, training, checkpoints.

Matches NVIDIA's stylegan2-ada-pytorch (names, shapes, maths) so that its pickles load and train
the same, without running any code stored inside them. Knows nothing about gda's plugins.
"""


def __getattr__(name):
    """`stylegan2_ada.load` (the one public entry for reading networks), imported on first use so
    that `import stylegan2_ada.errors` and friends do not load torch (the CLI's start-up time)."""
    if name == 'load':
        from .checkpoint import load
        return load
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
