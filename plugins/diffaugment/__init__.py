"""diffaugment: DiffAugment (Zhao, Liu, Lin, Zhu, Han, "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS 2020).

Applies the same differentiable colour, translation (1/8) and cutout (1/2) transformations to real
and fake images in every D pass (D step, G step, R1), chained before the core ADA pipe when both are
on. It proposes no core defaults (its StyleGAN2 port's low_shot cfg would clash with every
method's proposals), so it composes with any method: `--plugin genda --plugin diffaugment`.
"""

from gda_hooks import Option, hookimpl

from .policy import POLICIES, parse_policy

# torch and the modules that need it are imported inside the hooks: `gda --help`, `gda plugins`
# and the options of `gda train --help` load this plugin without loading torch.


def _check_policy(value):
    if not parse_policy(value):
        raise ValueError(f'give at least one of {", ".join(POLICIES)}')
    return ','.join(parse_policy(value))


@hookimpl
def options():
    return [Option('policy', str, ','.join(POLICIES),
                   'Comma-separated DiffAugment ops, applied in this order', validate=_check_policy)]


@hookimpl
def augmentations(run):
    from .augment import DiffAugment
    return [DiffAugment(run.options['policy'])]
