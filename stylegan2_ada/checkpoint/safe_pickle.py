"""Unpickle NVIDIA network pickles without running anything they contain.

NVIDIA's own loader exec()s the Python source stored in every network record, so opening a
downloaded pickle runs whatever code it holds. Here a restricted Unpickler resolves only the globals
on an allow-list; the persistent-object reconstructor becomes a plain `PersistentRecord` (class
name, init kwargs, tensors, children) and TF networks become a plain `TFNetwork`. The stored
source text is kept as an inert string and never compiled, executed or imported. Any other global
is refused with an error that names it.
"""

import collections
import io
import pickle
import warnings

import numpy as np
import torch

from ..errors import UserError

try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles name the old path.
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a dict with attribute access, nothing else."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state):
        # An EasyDict keeps its items as dict items; a BUILD state, if any, holds no attributes.
        if state:
            self.update(state)


class PersistentRecord:
    """One NVIDIA persistent object (a network or a sub-module), as inert data."""

    def __init__(self, meta):
        if not isinstance(meta, dict):
            raise UserError('a persistent-object record in the pickle is malformed (its metadata is not a dict)')
        if meta.get('type') != 'class':
            raise UserError(f'a persistent-object record has type {meta.get("type")!r}; only NVIDIA class records load')
        state = meta.get('state')
        if not isinstance(state, dict):
            raise UserError(f'the record of {meta.get("class_name")!r} has no state dict')
        self.class_name = str(meta.get('class_name'))
        self.version = meta.get('version')
        self.module_src = meta.get('module_src')  # kept as text only; never executed
        self.state = state

    @property
    def init_args(self):
        return tuple(self.state.get('_init_args', self.state.get('init_args', ())))

    @property
    def init_kwargs(self):
        return plain(self.state.get('_init_kwargs', self.state.get('init_kwargs', {})))

    @property
    def training(self):
        return bool(self.state.get('training', False))

    def _items(self, key):
        return [(name, value) for name, value in (self.state.get(key) or {}).items() if value is not None]

    def parameters(self):
        return self._items('_parameters')

    def buffers(self):
        skip = set(self.state.get('_non_persistent_buffers_set') or ())
        return [(name, value) for name, value in self._items('_buffers') if name not in skip]

    def children(self):
        return self._items('_modules')

    def __repr__(self):
        return f'PersistentRecord({self.class_name})'


class TFNetwork:
    """Stand-in for dnnlib.tflib.network.Network: keeps its pickled state as plain data."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UserError('a TensorFlow network in the pickle has no state dict')
        self.version = state.get('version')
        self.name = state.get('name')
        self.static_kwargs = plain(state.get('static_kwargs') or {})
        self.components = dict(state.get('components') or {})
        self.build_func_name = state.get('build_func_name')
        self.build_module_src = state.get('build_module_src')  # kept as text only; never executed
        self.variables = list(state.get('variables') or [])

    def __repr__(self):
        return f'TFNetwork({self.name})'


def plain(value):
    """EasyDicts and OrderedDicts become plain dicts, recursively (init kwargs, dataset kwargs)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value


def _refuse_hooks(hooks):
    if hooks:
        raise UserError('a tensor in the pickle carries backward hooks; refusing to load it')


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    _refuse_hooks(hooks)
    tensor = torch._utils._rebuild_tensor(storage, offset, size, stride)
    if metadata:
        raise UserError('a tensor in the pickle carries extra metadata; refusing to load it')
    return tensor


def _rebuild_tensor_v1(storage, offset, size, stride):
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    _refuse_hooks(hooks)
    return data  # plain tensors are all the record layer needs


def _load_from_bytes(data):
    """A storage saved as nested torch.save bytes (legacy or zip format), read with torch's safe loader."""
    if not isinstance(data, (bytes, bytearray)):
        raise UserError('a tensor storage in the pickle is not stored as bytes')
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UserError('the pickle holds a numpy scalar of object type; refusing to load it')
    return _np_multiarray.scalar(dtype, data)


def _np_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise UserError('the pickle rebuilds a numpy array subclass; refusing to load it')
    return _np_multiarray._reconstruct(cls, shape, dtype_code)


def _np_frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UserError('the pickle holds a numpy array of object type; refusing to load it')
    return _np_numeric._frombuffer(buffer, dtype, shape, order)


_DTYPES = ['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool']

# (module, name) -> what the pickle gets instead. Everything else is refused.
ALLOWED = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): PersistentRecord,
    ('dnnlib.tflib.network', 'Network'): TFNetwork,
    ('dnnlib.util', 'EasyDict'): EasyDict,
    ('dnnlib', 'EasyDict'): EasyDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor_v1,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _load_from_bytes,
    ('torch', 'Size'): torch.Size,
    ('torch', 'device'): torch.device,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('numpy', 'dtype'): np.dtype,
    ('numpy', 'ndarray'): np.ndarray,
    **{(f'numpy.{core}.multiarray', 'scalar'): _np_scalar for core in ('core', '_core')},
    **{(f'numpy.{core}.multiarray', '_reconstruct'): _np_reconstruct for core in ('core', '_core')},
    **{(f'numpy.{core}.numeric', '_frombuffer'): _np_frombuffer for core in ('core', '_core')},
    **{('torch', name): getattr(torch, name) for name in _DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class answers only from ALLOWED."""

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UserError(f'refusing to load the pickle: it asks for {module}.{name}, which is not on '
                            f'the allow-list of network data (it could run code)') from None

    def persistent_load(self, pid):
        raise UserError('refusing to load the pickle: it uses persistent ids (not a network pickle)')


def safe_unpickle(file):
    """Unpickle an open binary file with RestrictedUnpickler."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='TypedStorage is deprecated')
        try:
            return RestrictedUnpickler(file).load()
        except UserError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, RuntimeError) as error:
            raise UserError(f'cannot read the pickle: {error}') from None
