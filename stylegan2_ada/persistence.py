"""Record each network's constructor kwargs so it can be rebuilt from plain data.

NVIDIA's pickles store, for every network, its class name, init kwargs and tensors. We keep the
same information on our classes (`module.init_kwargs`) and a registry from class name to class:
that is all the safe loader needs to rebuild a network without executing stored code.
"""

import copy
import functools
import inspect

_registry = {}


def persistent_class(cls):
    """Class decorator: remember init kwargs on the instance and register the class by name."""
    signature = inspect.signature(cls.__init__)
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop('self')
        extra = {}
        for name, param in signature.parameters.items():
            if param.kind == param.VAR_KEYWORD:
                extra = arguments.pop(name, {})
        arguments.update(extra)
        original_init(self, *args, **kwargs)
        self.init_kwargs = copy.deepcopy(arguments)

    cls.__init__ = __init__
    if cls.__name__ in _registry and _registry[cls.__name__] is not cls:
        raise RuntimeError(f'persistent class name {cls.__name__!r} registered twice')
    _registry[cls.__name__] = cls
    return cls


def registered_class(name):
    """Our class for an NVIDIA/gda class name, or None when it is not one we rebuild."""
    return _registry.get(name)
