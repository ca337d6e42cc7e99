"""DiffAugment's policy names and their parsing, torch-free so that declaring the plugin's options
never loads torch (augment.py holds the ops themselves)."""

POLICIES = ('color', 'translation', 'cutout')


def parse_policy(policy):
    """'color,translation,cutout' -> a tuple of names; ValueError naming what is unknown."""
    names = tuple(name.strip() for name in policy.split(',') if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f'unknown DiffAugment op(s) {", ".join(unknown)}; '
                         f'choose from {", ".join(POLICIES)}')
    return names
