"""Turn stored network data back into our own modules, refusing anything that does not fit.

Every format ends here: a class name, the constructor kwargs the file itself stores, and a flat
name -> tensor state. The network is built from the file's kwargs (never from a config the user
happens to pass, which is how NVIDIA's loader silently drops layers), and the state must then fit
it exactly: every key present, no key left over, same shapes, and parameters vs buffers the same
(NVIDIA's frozen layers keep weight and bias as buffers).
"""

import torch

from .. import augment, networks  # noqa: F401  (importing them registers every class we rebuild)
from ..errors import UserError
from ..persistence import _registry, registered_class  # _registry: read only, to name the known classes
from .safe_pickle import PersistentRecord


def construct(class_name, init_kwargs, init_args=(), what='network'):
    """An instance of our class registered under `class_name`, built from stored kwargs."""
    cls = registered_class(class_name)
    if cls is None:
        raise UserError(f'refusing to load {what}: its class {class_name!r} is not one gda rebuilds '
                        f'(known: {", ".join(sorted(_registry))})')
    try:
        return cls(*init_args, **init_kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        raise UserError(f'cannot rebuild {what} ({class_name}) from the kwargs stored in the file: {error}') from None


def _kinds(module):
    kinds = {name: 'parameter' for name, _ in module.named_parameters()}
    kinds.update({name: 'buffer' for name, _ in module.named_buffers()})
    return kinds


def load_exact(module, state, what='network', kinds=None):
    """Copy `state` into `module`; every mismatch is an error that names the keys."""
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    shapes = [f'{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}'
              for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    problems = []
    if missing:
        problems.append(f'missing {_few(missing)}')
    if unexpected:
        problems.append(f'unexpected {_few(unexpected)}')
    if shapes:
        problems.append(f'shape (file vs network) {_few(shapes)}')
    if kinds is not None:
        ours = _kinds(module)
        swapped = [f'{key} ({kinds[key]} in file)' for key in kinds if key in ours and kinds[key] != ours[key]]
        if swapped:
            problems.append(f'parameter/buffer differs for {_few(swapped)}')
    if problems:
        raise UserError(f'{what} in the file does not fit the network built from its own kwargs: '
                        + '; '.join(problems))
    with torch.no_grad():
        module.load_state_dict({key: state[key] for key in own}, strict=True)
    return module


def _few(items, limit=4):
    shown = ', '.join(items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


def finish(module):
    """Networks come back like NVIDIA's snapshots hold them: eval mode, gradients off."""
    return module.eval().requires_grad_(False)


def _flatten(record, prefix, state, kinds, module, what):
    """Walk a record tree: collect tensors and check every child's class against our module."""
    if module is not None and type(module).__name__ != record.class_name:
        raise UserError(f'{what}: the file has a {record.class_name} at {prefix.rstrip(".") or "the top"}, '
                        f'where our network has a {type(module).__name__}')
    for name, tensor in record.parameters():
        state[prefix + name], kinds[prefix + name] = _tensor(tensor, prefix + name, what), 'parameter'
    for name, tensor in record.buffers():
        state[prefix + name], kinds[prefix + name] = _tensor(tensor, prefix + name, what), 'buffer'
    children = dict(module.named_children()) if module is not None else {}
    for name, child in record.children():
        if not isinstance(child, PersistentRecord):
            raise UserError(f'{what}: sub-module {prefix}{name} is not a network record')
        _flatten(child, f'{prefix}{name}.', state, kinds, children.get(name), what)


def _tensor(value, name, what):
    if not isinstance(value, torch.Tensor):
        raise UserError(f'{what}: {name} is a {type(value).__name__}, not a tensor')
    return value


def from_record(record, what='network'):
    """Our module for one NVIDIA persistent-object record (with all its sub-records)."""
    module = construct(record.class_name, record.init_kwargs, record.init_args, what)
    state, kinds = {}, {}
    _flatten(record, '', state, kinds, module, what)
    return finish(load_exact(module, state, what, kinds))


def module_record(module):
    """Plain data for one of our modules: class name, init kwargs and state_dict (detached, CPU)."""
    if registered_class(type(module).__name__) is not type(module) or not hasattr(module, 'init_kwargs'):
        raise UserError(f'cannot store a {type(module).__name__}: only persistent_class networks can be saved')
    state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
    return dict(class_name=type(module).__name__, init_kwargs=module.init_kwargs, state_dict=state)


RECORD_KEYS = {'class_name', 'init_kwargs', 'state_dict'}


def is_module_record(value):
    return isinstance(value, dict) and set(value) == RECORD_KEYS


def from_module_record(record, what='network'):
    """Our module from `module_record` data (a gda snapshot or state_dict export)."""
    module = construct(record['class_name'], dict(record['init_kwargs']), what=what)
    return finish(load_exact(module, record['state_dict'], what))
