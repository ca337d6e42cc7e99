"""Composition: the active plugins, in --plugin order, turned into the engine's `Extensions`.

`activate` checks names and options and collects proposed defaults (declaration, before any network
exists); `build_extensions` calls every construction hook of every active plugin in order, checks
what came back and tags it with its owner, so that the engine's conflict checks and logs can name
plugins. Nothing here trains: the engine applies the Extensions.
"""

import dataclasses
from typing import Any, Dict, List

from stylegan2_ada.errors import UserError
from stylegan2_ada.extensions import (Conditioning, DHead, Extensions, FreezePolicy, Hook,
                                      ParamGroup, WTransform)

from .plugins import Plugin, PluginError

# Construction hooks, in the order docs/hooks.md §5 calls them; each fills the Extensions field of
# the same name. (kind, expected item type): 'one' = a single item or None, 'list' = a list of
# items, 'map' = {layer path: module}.
CONSTRUCTION = {
    'conditioning':   ('one', Conditioning),
    'weight_reparam': ('map', None),
    'freeze_policy':  ('one', FreezePolicy),
    'param_groups':   ('list', ParamGroup),
    'd_heads':        ('list', DHead),
    'adv_loss':       ('one', None),
    'w_transforms':   ('list', WTransform),
    'latent_sampler': ('one', None),
    'select_branch':  ('one', None),
    'augmentations':  ('list', None),
    'augment_p':      ('one', None),
    'g_loss_terms':   ('list', None),
}
LIFECYCLE_FIELDS = ('on_tick', 'on_snapshot')


def option_key(name):
    return name.replace('-', '_')


def option_flag(plugin_name, option_name):
    """`--<plugin>-<option>`, the namespaced command-line flag of a plugin option."""
    return f'--{plugin_name.replace("_", "-")}-{option_name.replace("_", "-")}'


@dataclasses.dataclass
class Active:
    """A plugin active in this run: its parsed options, where each value came from, its proposals."""
    plugin: Plugin
    options: Dict[str, Any]
    option_origin: Dict[str, str]
    proposals: Dict[str, Any]

    @property
    def name(self):
        return self.plugin.name

    def record(self):
        """What the snapshot stores about it (state is added at snapshot time)."""
        return dict(name=self.name, distribution=self.plugin.distribution,
                    version=self.plugin.version, options=dict(self.options))


def parse_options(plugin, given):
    """Converted option values (defaults filled) and their origins; UserError on bad input."""
    declared = {option_key(o.name): o for o in plugin.options}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ', '.join(option_flag(plugin.name, o) for o in declared) or 'none'
        raise UserError(f'plugin {plugin.name!r} has no option(s) '
                        f'{", ".join(option_flag(plugin.name, u) for u in unknown)}; '
                        f'its options: {known}')
    values, origin = {}, {}
    for key, option in declared.items():
        if given.get(key) is None:
            values[key], origin[key] = option.default, 'default'
            continue
        try:
            values[key] = option.convert(given[key])
        except ValueError as error:
            raise UserError(f'{option_flag(plugin.name, option.name)}: {error}') from None
        origin[key] = 'command line'
    return values, origin


def activate(manager, names, given=None):
    """The plugins named by --plugin, in that order, with options and proposed defaults.

    `given` maps plugin name -> {option: value} for options set explicitly. Unknown or broken
    plugins, a plugin named twice, and options of a plugin that is not active are errors.
    """
    given = dict(given or {})
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise UserError(f'--plugin {repeated[0]} is given more than once')
    for name, values in given.items():
        if name not in names and any(v is not None for v in values.values()):
            flags = ', '.join(option_flag(name, key) for key, v in values.items() if v is not None)
            raise UserError(f'{flags} given, but plugin {name!r} is not active; add --plugin {name}')
    active = []
    for name in names:
        plugin = manager.get(name)
        options, origin = parse_options(plugin, given.get(name, {}))
        proposals = manager.call(name, 'propose_defaults', options=dict(options)) or {}
        if not isinstance(proposals, dict):
            raise PluginError(f'plugin {name!r}: propose_defaults() must return a dict, '
                              f'got {type(proposals).__name__}')
        active.append(Active(plugin, options, origin, dict(proposals)))
    return active


def _checked(name, hook, result):
    """The hook's result as a list of items, after checking its shape (a clear error naming the
    plugin when a plugin returns the wrong thing)."""
    kind, item_type = CONSTRUCTION[hook]
    if result is None:
        return []
    if kind == 'map':
        if not isinstance(result, dict) or not all(isinstance(k, str) and callable(v)
                                                   for k, v in result.items()):
            raise PluginError(f'plugin {name!r}: {hook}() must return {{layer path: module}}, got '
                              f'{type(result).__name__}')
        return [result] if result else []
    items = [result] if kind == 'one' else result
    if kind == 'list' and not isinstance(result, (list, tuple)):
        raise PluginError(f'plugin {name!r}: {hook}() must return a list, got '
                          f'{type(result).__name__}')
    for item in items:
        wrong = not isinstance(item, item_type) if item_type is not None else not callable(item)
        if wrong:
            expected = item_type.__name__ if item_type is not None else 'a callable'
            raise PluginError(f'plugin {name!r}: {hook}() must give {expected} items, got '
                              f'{type(item).__name__}')
    return list(items)


def _owned(item, name):
    """Tag a contribution with its plugin: dataclasses have `owner`; callables get wrapped."""
    if dataclasses.is_dataclass(item) and hasattr(item, 'owner'):
        if item.owner is None:
            item.owner = name
        return item
    return Hook(item, owner=name)


def build_extensions(manager, active: List[Active], run, with_owners=False):
    """Call every construction hook of the active plugins in order; the filled Extensions.

    Lifecycle hooks (on_tick, on_snapshot) are bound to each plugin's view of `run`. with_owners
    also returns {plugin: {hook: [items]}}, what each plugin contributed.
    """
    ext = Extensions()
    by_plugin = {}
    for entry in active:
        view = run.for_plugin(entry.name)
        mine = by_plugin.setdefault(entry.name, {})
        for hook in CONSTRUCTION:
            result = manager.call(entry.name, hook, run=view)
            for item in _checked(entry.name, hook, result):
                item = item if hook == 'weight_reparam' else _owned(item, entry.name)
                getattr(ext, hook).append(item)
                mine.setdefault(hook, []).append(item)
        for hook in LIFECYCLE_FIELDS:
            if manager.implements(entry.name, hook):
                getattr(ext, hook).append(Hook(_bound(manager, entry.name, hook, view),
                                               owner=entry.name))
    return (ext, by_plugin) if with_owners else ext


def _bound(manager, name, hook, view):
    def call(info):
        return manager.call(name, hook, run=view, info=info)
    call.__name__ = f'{name}.{hook}'
    return call
