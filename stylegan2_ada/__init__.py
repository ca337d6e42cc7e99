"""Our own StyleGAN2-ADA: networks, ops, augmentation, losses, training, checkpoints.

Matches NVIDIA's stylegan2-ada-pytorch (names, shapes, maths) so that its pickles load and train
the same, without running any code stored inside them. Knows nothing about gda's plugins.
"""

from .checkpoint import load  # noqa: E402  (the one public entry for reading networks)
