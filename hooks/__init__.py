"""gda_hooks: the contract between the gda host and method plugins.

A plugin is any object (usually a module) whose functions carry `@hookimpl` and are named after the
hook specifications in `gda_hooks.specs`; it is installed by registering it under the `gda.plugins`
entry-point group. Everything a plugin author needs from this package is here: the two markers, the
`Option` declaration and the `NotFoldable` exception. It depends on pluggy and the standard library
only, so importing it never drags in the engine.
"""

import dataclasses
from typing import Any, Callable, Optional, Sequence

import pluggy

PROJECT = 'gda'
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

OPTION_TYPES = (int, float, str, bool)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a plugin, shown as `--<plugin>-<name>` in `gda train`.

    type is int, float, str or bool (bool becomes a `--x/--no-x` flag). `choices` restricts a str;
    `validate(value)` may raise ValueError with a message, or return a normalised value. A default
    of None means "not set": the plugin decides what that means.
    """
    name: str
    type: type = str
    default: Any = None
    help: str = ''
    choices: Optional[Sequence[str]] = None
    validate: Optional[Callable[[Any], Any]] = None

    def __post_init__(self):
        if not self.name or not self.name.replace('-', '_').isidentifier():
            raise ValueError(f'option name {self.name!r} must be letters, digits, - or _')
        if self.type not in OPTION_TYPES:
            raise ValueError(f'option {self.name!r}: type must be one of int, float, str, bool, '
                             f'got {self.type!r}')
        if self.choices is not None and self.type is not str:
            raise ValueError(f'option {self.name!r}: choices need type str')
        if self.default is not None:
            object.__setattr__(self, 'default', self.convert(self.default))

    def convert(self, value):
        """value (from the CLI, an API call or a snapshot) as this option's type; ValueError if not."""
        if self.type is bool:
            if isinstance(value, str) and value.lower() in ('true', '1', 'yes', 'false', '0', 'no'):
                value = value.lower() in ('true', '1', 'yes')
            if not isinstance(value, bool):
                raise ValueError(f'expected true or false, got {value!r}')
        elif self.type is int:
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError(f'expected an integer, got {value!r}')
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f'expected an integer, got {value!r}') from None
        elif self.type is float:
            if isinstance(value, bool):
                raise ValueError(f'expected a number, got {value!r}')
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f'expected a number, got {value!r}') from None
        elif not isinstance(value, str):
            raise ValueError(f'expected a string, got {value!r}')
        if self.choices is not None and value not in self.choices:
            raise ValueError(f'{value!r} is not one of {", ".join(self.choices)}')
        if self.validate is not None:
            checked = self.validate(value)
            value = value if checked is None else checked
        return value


class NotFoldable(Exception):
    """Raised by a plugin's `fold` when its effect cannot be written into plain weights."""


# Validators for Option(validate=...): the checks most options need, with one wording.
def positive(value):
    if not value > 0:   # NaN too
        raise ValueError(f'must be positive, got {value}')


def non_negative(value):
    if value < 0:
        raise ValueError(f'must be 0 or more, got {value}')


def probability(value):
    if not 0 <= value <= 1:
        raise ValueError(f'must lie in [0, 1], got {value}')


def percentile(value):
    if not 0 <= value <= 100:
        raise ValueError(f'{value} is not a percentile in [0, 100]')


__all__ = ['PROJECT', 'hookspec', 'hookimpl', 'Option', 'NotFoldable', 'OPTION_TYPES', 'positive',
           'non_negative', 'probability', 'percentile']
