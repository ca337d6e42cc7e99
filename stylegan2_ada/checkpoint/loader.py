"""`load(source)`: one entry for every checkpoint format, told apart by content, not by name.

Formats: NVIDIA's StyleGAN2-ADA pickles (restricted unpickler, records rebuilt as our classes),
original StyleGAN2 TensorFlow pickles (converted), gda snapshots and export_state_dict files
(torch.load with weights_only=True), rosinality/stylegan2-pytorch checkpoints (the same, with
argparse.Namespace allowed for their `args`; rebuilt by rosinality.py). No format runs code from
the file.
"""

import argparse
import hashlib
import zipfile

import torch

from ..errors import UserError
from .presets import resolve
from .rebuild import from_record
from .rosinality import is_rosinality, read_rosinality
from .safe_pickle import PersistentRecord, TFNetwork, plain, safe_unpickle
from .snapshot import is_snapshot, is_state_dict_export, read_snapshot, read_state_dict_export, torch_load
from .tf_convert import convert_generator, convert_tf_pickle, is_tf_pickle

STANDARD_KEYS = ('G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'gda')
_TORCH_LEGACY_MAGIC = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'

FORMAT_NAMES = {
    'nvidia-pickle': "NVIDIA StyleGAN2-ADA pickle",
    'tf-pickle': 'StyleGAN2 TensorFlow pickle (converted)',
    'gda-snapshot': 'gda snapshot',
    'state-dict': 'state_dicts with kwargs',
    'rosinality': 'rosinality/stylegan2-pytorch checkpoint (converted)',
}
# torch.save'd files may hold these besides tensors and plain values: argparse.Namespace is how
# rosinality's train.py stores its options (rebuilt as a bare attribute holder, nothing runs).
TORCH_ALLOWED = (argparse.Namespace,)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(path):
    """(format, raw data) for a checkpoint file; raw data still holds records, not modules."""
    try:
        with open(path, 'rb') as file:
            head = file.read(len(_TORCH_LEGACY_MAGIC))
            file.seek(0)
            if head.startswith(b'PK\x03\x04'):
                with zipfile.ZipFile(file) as archive:
                    is_torch = any(name.endswith('data.pkl') for name in archive.namelist())
                if not is_torch:
                    raise UserError(f'{path} is a zip archive but not a checkpoint (a dataset?)')
                return 'torch', torch_load(path, allow=TORCH_ALLOWED)
            if head == _TORCH_LEGACY_MAGIC:
                return 'torch', torch_load(path, allow=TORCH_ALLOWED)
            if not head.startswith(b'\x80'):
                raise UserError(f'{path} is not a checkpoint (neither a pickle nor a torch.save file)')
            return 'pickle', safe_unpickle(file)
    except zipfile.BadZipFile as error:
        raise UserError(f'{path} is a damaged zip file: {error}') from None
    except OSError as error:
        raise UserError(f'cannot read {path}: {error}') from None


def interpret(kind, data, where='the file'):
    """(format name, result dict) from read_file's raw data."""
    if kind == 'pickle':
        if is_tf_pickle(data):
            return 'tf-pickle', convert_tf_pickle(data)
        if isinstance(data, TFNetwork):
            return 'tf-pickle', dict(G_ema=convert_generator(data, 'G_ema'))
        if isinstance(data, dict) and any(isinstance(value, PersistentRecord) for value in data.values()):
            return 'nvidia-pickle', {key: from_record(value, key) if isinstance(value, PersistentRecord)
                                     else plain(value) for key, value in data.items()}
    if isinstance(data, dict) and is_snapshot(data):
        return 'gda-snapshot', read_snapshot(data)
    if isinstance(data, dict) and is_state_dict_export(data):
        return 'state-dict', read_state_dict_export(data)
    if is_rosinality(data):
        return 'rosinality', read_rosinality(data, where)
    if isinstance(data, dict) and data and all(isinstance(value, torch.Tensor) for value in data.values()):
        raise UserError(f'{where} holds a bare state_dict without constructor kwargs; build the network with '
                        f'its kwargs and use stylegan2_ada.checkpoint.import_state_dict(network, path)')
    raise UserError(f'{where} holds no networks gda knows (a {type(data).__name__}); expected an NVIDIA '
                    f'or TensorFlow network pickle, a gda snapshot, an export_state_dict file or a '
                    f'rosinality/stylegan2-pytorch checkpoint')


def load(source, cache=None, verbose=False):
    """Networks and everything else in a checkpoint: preset name, http(s) URL or local path.

    Returns a dict with G, D, G_ema, augment_pipe, training_set_kwargs and gda (None where the file
    has none), any other keys the file holds, and `origin` = {reference, url, path, sha256,
    format}. Networks are our own modules, in eval mode with gradients off.
    """
    path, url = resolve(source, cache=cache, verbose=verbose)
    kind, data = read_file(path)
    fmt, result = interpret(kind, data, where=str(source))
    for key in STANDARD_KEYS:
        result.setdefault(key, None)
    result['origin'] = dict(reference=str(source), url=url, path=str(path), sha256=sha256(path), format=fmt)
    return result
