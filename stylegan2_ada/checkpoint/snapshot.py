"""gda's own snapshot files and plain state_dict export/import.

Why not a pickle of the modules, as NVIDIA writes: reading such a file means trusting code paths
it names. A gda snapshot is instead a torch.save'd dict of plain data that torch.load reads with
weights_only=True, torch's own allow-listing unpickler, so it is as safe to open as a tensor file and
readable without gda. Layout (format version 1):

    G, D, G_ema, augment_pipe    network records {class_name, init_kwargs, state_dict} or None
    training_set_kwargs          dict or None (NVIDIA's keys)
    gda:
        format_version           1
        source                   {reference, url, sha256, kwargs} of the source network, or None
        source_G                 record of the frozen source G, or None (may be left out)
        plugins                  [{name, distribution, version, options, state}], in order
        loop                     {cur_nimg, iteration, optimizer states, ada_p, pl_mean, rng, ...}

Everything else in the file (plugin state, loop state) must be tensors and plain Python values;
saving anything else is an error naming where it sits. Networks are stored only at the network keys
and gda.source_G; plugins store their modules' state_dict(). Files are written atomically.
"""

import collections
import pickle
import re

import torch

from ..errors import UserError
from .atomic import atomic_write
from .rebuild import from_module_record, is_module_record, load_exact, module_record

FORMAT_VERSION = 1
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')
GDA_KEYS = ('format_version', 'source', 'source_G', 'plugins', 'loop')
PLUGIN_KEYS = ('name', 'distribution', 'version', 'options', 'state')
DEFAULT_CLASSES = {'G': 'Generator', 'G_ema': 'Generator', 'D': 'Discriminator', 'augment_pipe': 'AugmentPipe'}

_SCALARS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def check_plain(value, where):
    """Raise UserError unless `value` is tensors and plain values only (what weights_only reads)."""
    if isinstance(value, torch.nn.Module):
        raise UserError(f'{where} is a {type(value).__name__} module; store its state_dict() instead')
    if isinstance(value, (torch.Tensor, *_SCALARS)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f'{where}[{index}]')
        return
    if isinstance(value, dict) and type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise UserError(f'{where} has a key of type {type(key).__name__}; use str or int keys')
            check_plain(item, f'{where}[{key!r}]')
        return
    raise UserError(f'{where} is a {type(value).__module__}.{type(value).__name__}; snapshots hold tensors and '
                    f'plain Python values only (convert it, e.g. float(x), x.tolist(), torch.as_tensor(x))')


def _network(value, where):
    if value is None:
        return None
    if not isinstance(value, torch.nn.Module):
        raise UserError(f'{where} must be a network module or None, not {type(value).__name__}')
    return module_record(value)


def _gda_entry(gda):
    gda = dict(gda or {})
    unknown = sorted(set(gda) - set(GDA_KEYS))
    if unknown:
        raise UserError(f'snapshot gda entry has unknown keys {", ".join(unknown)} (known: {", ".join(GDA_KEYS)})')
    gda['format_version'] = FORMAT_VERSION
    gda.setdefault('source', None)
    gda['source_G'] = _network(gda.get('source_G'), "gda['source_G']")
    gda.setdefault('plugins', [])
    gda.setdefault('loop', {})
    for index, plugin in enumerate(gda['plugins']):
        if not isinstance(plugin, dict) or set(plugin) != set(PLUGIN_KEYS):
            raise UserError(f"gda['plugins'][{index}] must be a dict with exactly {', '.join(PLUGIN_KEYS)}")
    for key in ('source', 'plugins', 'loop'):
        check_plain(gda[key], f'gda[{key!r}]')
    return gda


def snapshot_data(snapshot):
    """The plain-data form of a snapshot dict whose network keys hold modules."""
    data = {}
    for key, value in snapshot.items():
        if key in NETWORK_KEYS:
            data[key] = _network(value, key)
        elif key == 'gda':
            data[key] = _gda_entry(value)
        else:
            check_plain(value, key)
            data[key] = value
    for key in NETWORK_KEYS + ('training_set_kwargs',):
        data.setdefault(key, None)
    data.setdefault('gda', _gda_entry(None))
    return data


class _ByteCounter:
    """A write-only sink that only counts: torch.save into it measures a file without disk."""

    def __init__(self):
        self.count = 0

    def write(self, data):
        self.count += len(data)
        return len(data)

    def flush(self):
        pass


def saved_size(data):
    """The bytes torch.save(data) writes (asked only when a write failed for lack of space)."""
    counter = _ByteCounter()
    torch.save(data, counter)
    return counter.count


def save_snapshot(path, snapshot):
    """Write a gda snapshot (see the module docstring) atomically to `path`; a full disk is a
    DiskFull error saying how much the snapshot needs."""
    data = snapshot_data(snapshot)
    with atomic_write(path, needs=lambda: saved_size(data)) as file:
        torch.save(data, file)


def is_snapshot(data):
    return isinstance(data, dict) and isinstance(data.get('gda'), dict) and 'format_version' in data['gda']


def read_snapshot(data):
    """A loaded snapshot dict with its network records rebuilt as our modules."""
    version = data['gda']['format_version']
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f'snapshot format version {version!r} is newer than this gda reads ({FORMAT_VERSION}); '
                        f'upgrade gda')
    result = dict(data)
    for key in NETWORK_KEYS:
        if result.get(key) is not None:
            result[key] = _rebuilt(result[key], key)
    gda = dict(result['gda'])
    if gda.get('source_G') is not None:
        gda['source_G'] = _rebuilt(gda['source_G'], 'source_G')
    result['gda'] = gda
    return result


def _rebuilt(record, what):
    if not is_module_record(record):
        raise UserError(f'{what} in the snapshot is not a network record')
    return from_module_record(record, what)


def torch_load(path, allow=()):
    """torch.load with weights_only=True (torch's allow-listing unpickler), errors as UserError.

    `allow` adds classes that rebuild as plain attribute holders (argparse.Namespace, which
    rosinality's checkpoints store); nothing that could run code belongs there.
    """
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(f"refusing to load {path}: it holds objects outside torch's weights-only "
                        f'allow-list ({_refusal(error)}); nothing from it was run') from None
    except (RuntimeError, EOFError, OSError) as error:
        raise UserError(f'cannot read {path}: {error}') from None


def _refusal(error):
    """The one useful fact in torch's long weights-only error: which global it met."""
    text = str(error)
    if match := re.search(r'GLOBAL ([\w.]+)', text):
        return f'{match[1]} is not allowed'
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else 'unsupported content'


def export_state_dict(path, **networks):
    """Write plain state_dicts with their kwargs: {name}_class, {name}_kwargs, {name}_state per network."""
    data = {}
    for name, module in networks.items():
        if module is None:
            continue
        record = _network(module, name)
        data[f'{name}_class'] = record['class_name']
        data[f'{name}_kwargs'] = record['init_kwargs']
        data[f'{name}_state'] = record['state_dict']
    if not data:
        raise UserError('nothing to export: pass at least one network, e.g. G_ema=G_ema')
    check_plain({key: value for key, value in data.items() if key.endswith('_kwargs')}, 'kwargs')
    with atomic_write(path) as file:
        torch.save(data, file)


def is_state_dict_export(data):
    return isinstance(data, dict) and any(
        key.endswith('_kwargs') and f'{key[:-len("_kwargs")]}_state' in data for key in data)


def read_state_dict_export(data):
    """{name: module} for every {name}_kwargs / {name}_state pair, other keys passed through."""
    result = {}
    names = [key[:-len('_kwargs')] for key in data
             if key.endswith('_kwargs') and f'{key[:-len("_kwargs")]}_state' in data]
    for name in names:
        class_name = data.get(f'{name}_class', DEFAULT_CLASSES.get(name))
        if class_name is None:
            raise UserError(f'the file does not say which class {name} is; add {name}_class to it')
        record = dict(class_name=class_name, init_kwargs=data[f'{name}_kwargs'], state_dict=data[f'{name}_state'])
        result[name] = from_module_record(record, name)
    for key, value in data.items():
        stem = key.rsplit('_', 1)[0]
        if stem not in names:
            result[key] = value
    return result


def import_state_dict(module, state, key=None):
    """Load a state_dict (a dict, or a file written by torch.save or export_state_dict) into `module`.

    The fit is exact: missing, unexpected or differently shaped keys are an error naming them.
    `key` picks one network ('G_ema', ...) from an export_state_dict file.
    """
    if not isinstance(state, dict):
        state = torch_load(state)
        if key is None and is_state_dict_export(state):
            raise UserError('the file holds several networks; pass key= one of '
                            + ', '.join(k[:-len('_state')] for k in state if k.endswith('_state')))
    if key is not None:
        if f'{key}_state' not in state:
            raise UserError(f'the file holds no {key}_state')
        state = state[f'{key}_state']
    return load_exact(module, state, key or type(module).__name__)
