"""The plugin manager: finds plugins through the `gda.plugins` entry points and calls their hooks.

Built-in methods register exactly like third-party ones, so there is one loading path. A plugin that
fails to load (import error, a hook name that is no hook, a bad signature, bad options) is kept aside
with its error, reported by `gda plugins` and by `--plugin NAME`, and breaks nothing else. Hooks are
called per plugin, in the order the user gave, so every contribution is tagged with its owner.
"""

import contextlib
import dataclasses
import functools
import importlib.metadata
import os
import re
import signal
from typing import Any, Dict, List, Optional

import click
import pluggy

import gda_hooks
from gda_hooks import specs
from stylegan2_ada.errors import UserError

ENTRY_POINT_GROUP = 'gda.plugins'
AUTOLOAD_ENV = 'GDA_DISABLE_PLUGIN_AUTOLOAD'   # set to 1: load no entry point (tests, debugging)
NAME_PATTERN = re.compile(r'^[a-z][a-z0-9_]*$')


class PluginError(UserError):
    """A plugin that cannot be used: not installed, failed to load, or broke its contract."""


@dataclasses.dataclass
class Plugin:
    """A loaded plugin: its object (usually a module), where it came from, what it implements."""
    name: str
    obj: Any
    distribution: Optional[str] = None
    version: Optional[str] = None
    options: List[gda_hooks.Option] = dataclasses.field(default_factory=list)
    hooks: List[str] = dataclasses.field(default_factory=list)

    @property
    def origin(self):
        return f'{self.distribution or "not installed"} {self.version or ""}'.strip()


@dataclasses.dataclass
class BrokenPlugin:
    name: str
    distribution: Optional[str]
    version: Optional[str]
    error: str


def _describe(error):
    if isinstance(error, SystemExit):
        return f'it called sys.exit({error.code!r})'
    return f'{type(error).__name__}: {error}'.strip().rstrip(':')


@contextlib.contextmanager
def _real_interrupts():
    """Yields a dict whose 'seen' tells a real Ctrl-C from a KeyboardInterrupt that plugin code
    raised itself: only the first must stop gda; the second is that plugin's failure."""
    state = dict(seen=False)

    def handler(signum, frame):
        state['seen'] = True
        raise KeyboardInterrupt
    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, handler)
    except ValueError:   # not the main thread: signals go elsewhere, plain rules apply
        previous = None
    try:
        yield state
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


def run_plugin_code(fn):
    """(result, None), or (None, error description) if plugin code fails in any way, sys.exit()
    and BaseExceptions included, so that one plugin cannot end every gda command."""
    with _real_interrupts() as interrupts:
        try:
            return fn(), None
        except PluginError as error:
            return None, str(error)
        except BaseException as error:   # third-party code: anything it raises stays isolated
            if interrupts['seen'] or isinstance(error, GeneratorExit):
                raise
            return None, _describe(error)


class PluginManager:
    """Holds the installed plugins; `call(name, hook, **kwargs)` runs one plugin's hook."""

    def __init__(self):
        self._pm = pluggy.PluginManager(gda_hooks.PROJECT)
        self._pm.add_hookspecs(specs)
        self.plugins: Dict[str, Plugin] = {}
        self.broken: Dict[str, BrokenPlugin] = {}

    # -- loading ----------------------------------------------------------------------------------

    def load_entry_points(self, entry_points=None):
        """Load every `gda.plugins` entry point; failures are recorded in `broken`, not raised.

        Entry points are read from every distribution on the path, as pluggy does (not through
        importlib's per-name deduplication, which lets a stale *.egg-info hide the real one); the
        same entry point seen twice is loaded once, two different ones of one name clash.
        """
        seen = {}
        for ep in (found_entry_points() if entry_points is None else entry_points):
            dist = getattr(ep, 'dist', None)
            distribution = dist.metadata['Name'] if dist is not None else None
            version = dist.version if dist is not None else None
            if ep.name in seen:
                if seen[ep.name] != (distribution, ep.value):
                    self.broken[f'{ep.name} ({distribution})'] = BrokenPlugin(
                        ep.name, distribution, version,
                        f'the name {ep.name!r} is already taken by {seen[ep.name][0]}')
                continue
            seen[ep.name] = (distribution, ep.value)
            _, error = run_plugin_code(
                lambda: self.register(ep.load(), ep.name, distribution, version))
            if error is not None:
                self.broken[ep.name] = BrokenPlugin(ep.name, distribution, version, error)

    def register(self, obj, name, distribution=None, version=None):
        """Register `obj` as plugin `name`; PluginError (and nothing registered) if it is unusable."""
        if not NAME_PATTERN.match(name):
            raise PluginError(f'plugin name {name!r} must be lower-case letters, digits and _')
        if name in self.plugins:
            raise PluginError(f'a plugin named {name!r} is already registered')
        try:
            self._pm.register(obj, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(f'plugin {name!r}: {error}') from None
        try:
            self._check_hooks(name, obj)
            plugin = Plugin(name, obj, distribution, version)
            plugin.hooks = [hook for hook in specs.HOOK_NAMES if self._impl(name, hook)]
            self.plugins[name] = plugin
            plugin.options = self._declared_options(plugin)
        except Exception:
            self.plugins.pop(name, None)
            self._pm.unregister(name=name)
            raise
        return plugin

    def _check_hooks(self, name, obj):
        for caller in self._pm.get_hookcallers(obj) or []:
            if not caller.has_spec():
                known = ', '.join(specs.HOOK_NAMES)
                raise PluginError(f'plugin {name!r} implements {caller.name!r}, which is not a gda '
                                  f'hook (hooks: {known})')
            impl = next(i for i in caller.get_hookimpls() if i.plugin_name == name)
            if impl.hookwrapper or impl.wrapper:
                raise PluginError(f'plugin {name!r}: {caller.name} is a wrapper; gda calls each '
                                  f"plugin's hooks itself, so wrappers are not supported")

    def _declared_options(self, plugin):
        declared = self.call(plugin.name, 'options') or []
        if not isinstance(declared, (list, tuple)) or \
                not all(isinstance(o, gda_hooks.Option) for o in declared):
            raise PluginError(f'plugin {plugin.name!r}: options() must return a list of '
                              f'gda_hooks.Option')
        names = [option.name.replace('-', '_') for option in declared]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PluginError(f'plugin {plugin.name!r} declares option(s) {duplicates} twice')
        return list(declared)

    def mark_broken(self, name, error):
        """Take a loaded plugin out of service (e.g. its option flags clash with core ones)."""
        plugin = self.plugins.pop(name)
        self._pm.unregister(name=name)
        self.broken[name] = BrokenPlugin(name, plugin.distribution, plugin.version, error)

    # -- lookup -----------------------------------------------------------------------------------

    def get(self, name, purpose='--plugin'):
        """The usable plugin `name`, or a PluginError that says what is installed or what broke."""
        if name in self.plugins:
            return self.plugins[name]
        if name in self.broken:
            broken = self.broken[name]
            where = f' ({broken.distribution} {broken.version})' if broken.distribution else ''
            raise PluginError(f'plugin {name!r}{where} failed to load: {broken.error}')
        installed = ', '.join(sorted(self.plugins)) or 'none'
        hint = ' (plugin autoloading is off: unset ' + AUTOLOAD_ENV + ')' \
            if os.environ.get(AUTOLOAD_ENV) else ''
        raise PluginError(f'{purpose} {name}: no such plugin; installed: {installed}{hint}')

    def _impl(self, name, hook):
        for impl in getattr(self._pm.hook, hook).get_hookimpls():
            if impl.plugin_name == name:
                return impl
        return None

    def implements(self, name, hook):
        return self._impl(name, hook) is not None

    # -- calling ----------------------------------------------------------------------------------

    def call(self, name, hook, **kwargs):
        """Run plugin `name`'s implementation of `hook` (None if it has none).

        The plugin receives the arguments it asks for. A UserError it raises is prefixed with its
        name; any other exception keeps its traceback, with a note naming plugin and hook.
        """
        impl = self._impl(name, hook)
        if impl is None:
            return None
        try:
            return impl.function(*[kwargs[arg] for arg in impl.argnames])
        except UserError as error:
            if str(error).startswith(f'plugin {name!r}'):
                raise
            raise UserError(f'plugin {name!r}: {error}') from error
        except Exception as error:
            if hasattr(error, 'add_note'):
                plugin = self.plugins.get(name)
                error.add_note(f'raised by hook {hook!r} of plugin {name!r}'
                               + (f' ({plugin.origin})' if plugin else ''))
            raise

    # -- command-line sub-commands ------------------------------------------------------------------

    def register_commands(self, cli, warn):
        """Give every plugin the chance to add sub-commands to `cli`.

        Each plugin adds to a scratch group first, so a clash or an exception is reported with
        `warn(message)` and skipped without touching the real group.
        """
        for name in sorted(self.plugins):
            if not self.implements(name, 'register_commands'):
                continue
            scratch = click.Group(name)
            _, error = run_plugin_code(lambda: self.call(name, 'register_commands', cli=scratch))
            if error is not None:
                warn(f'plugin {name!r} could not register its commands: {error}')
                continue
            for command_name, command in scratch.commands.items():
                if command_name in cli.commands:
                    warn(f"plugin {name!r}: command {command_name!r} clashes with an existing "
                         f'gda command and was skipped')
                    continue
                cli.add_command(command, command_name)


def found_entry_points():
    """The `gda.plugins` entry points of every distribution on sys.path, sorted by name."""
    found = [ep for dist in importlib.metadata.distributions() for ep in dist.entry_points
             if ep.group == ENTRY_POINT_GROUP]
    return sorted(found, key=lambda ep: ep.name)


@functools.lru_cache(maxsize=None)
def default_manager():
    """The process's plugin manager: every installed entry point, unless autoloading is off."""
    manager = PluginManager()
    if os.environ.get(AUTOLOAD_ENV, '') in ('', '0'):
        manager.load_entry_points()
    return manager
