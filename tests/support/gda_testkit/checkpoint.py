"""Test helpers: write NVIDIA-format network pickles (PyTorch and TensorFlow) without NVIDIA's code.

The pickles carry exactly the globals and record layout of NVIDIA's files
(torch_utils.persistence._reconstruct_persistent_obj with meta = dict(type='class', version=6,
module_src, class_name, state), dnnlib.util.EasyDict, numpy.core.multiarray.scalar,
torch.storage._load_from_bytes, dnnlib.tflib.network.Network), written by a pure-Python pickler
that emits those global names without any such module existing. The tests reach it through the
`ckpt` fixture (tests/conftest.py).
"""

import collections
import copy
import io
import pathlib
import pickle
import types

import numpy as np
import torch

GOLDEN = ('tiny32_skip_resnet', 'tiny32_cond_orig_freeze2')
DATA = pathlib.Path(__file__).resolve().parents[2] / 'data'     # tests/data: the GOLDEN networks


def fake_global(module, name):
    """Mark a function or class to be pickled as the global `module.name`."""
    def mark(obj):
        obj.__fake_global__ = (module, name)
        return obj
    return mark


@fake_global('torch_utils.persistence', '_reconstruct_persistent_obj')
def _reconstruct_persistent_obj(meta):
    raise AssertionError('only ever pickled, never called')


@fake_global('numpy.core.multiarray', 'scalar')
def _numpy_scalar(dtype, data):
    raise AssertionError('only ever pickled, never called')


@fake_global('dnnlib.util', 'EasyDict')
class FakeEasyDict(dict):
    """Pickles as dnnlib.util.EasyDict (a dict subclass, like NVIDIA's)."""


@fake_global('dnnlib.tflib.network', 'Network')
class FakeTFNetwork:
    """Pickles as dnnlib.tflib.network.Network with NVIDIA's version-4 state."""

    def __init__(self, name, static_kwargs, variables, components=None, module_src='', func_name=''):
        self.state = dict(version=4, name=name, static_kwargs=dict(static_kwargs),
                          components=dict(components or {}), build_module_src=module_src,
                          build_func_name=func_name, variables=list(variables))

    def __getstate__(self):
        return self.state


def easydict(value):
    if isinstance(value, dict):
        return FakeEasyDict({key: easydict(item) for key, item in value.items()})
    return value


def _module_state(module):
    """What NVIDIA's persistence stores as `state`: the module's __dict__ (torch 1.x flavour)."""
    state = {'training': module.training,
             '_parameters': collections.OrderedDict(module._parameters),
             '_buffers': collections.OrderedDict(module._buffers),
             '_non_persistent_buffers_set': set(),
             '_backward_hooks': collections.OrderedDict(),
             '_forward_hooks': collections.OrderedDict(),
             '_forward_pre_hooks': collections.OrderedDict(),
             '_state_dict_hooks': collections.OrderedDict(),
             '_load_state_dict_pre_hooks': collections.OrderedDict(),
             '_modules': collections.OrderedDict(module._modules)}
    for key, value in module.__dict__.items():
        if key.startswith('_') or key in ('training', 'init_kwargs'):
            continue
        if isinstance(value, float):
            value = np.float64(value)  # NVIDIA's gains are numpy floats
        if isinstance(value, (bool, int, float, str, type(None), list, tuple)):
            state[key] = value
    state['_init_args'] = ()
    state['_init_kwargs'] = easydict(getattr(module, 'init_kwargs', {}))  # easydict copies the dicts
    return state


class NvidiaPickler(pickle._Pickler):
    """Pure-Python pickler that writes our modules as NVIDIA persistent-object records."""

    def __init__(self, file, module_src, storage='legacy', extra_reduce=None):
        super().__init__(file, protocol=3)
        self.module_src = module_src
        self.storage = storage
        self.extra_reduce = extra_reduce or {}

    def reducer_override(self, obj):
        if isinstance(obj, torch.nn.Module):
            meta = dict(type='class', version=6, module_src=self.module_src,
                        class_name=type(obj).__name__, state=_module_state(obj))
            return _reconstruct_persistent_obj, (meta,)
        if isinstance(obj, np.generic) and not isinstance(obj, np.ndarray):
            return _numpy_scalar, (obj.dtype, obj.tobytes())
        if self.storage == 'zip' and isinstance(obj, torch.storage.TypedStorage):
            buffer = io.BytesIO()
            torch.save(obj, buffer)  # newer torch.save format nested inside the pickle
            return torch.storage._load_from_bytes, (buffer.getvalue(),)
        if type(obj) in self.extra_reduce:
            return self.extra_reduce[type(obj)](obj)
        return NotImplemented

    def save_global(self, obj, name=None):
        fake = getattr(obj, '__fake_global__', None)
        if fake is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f'{fake[0]}\n{fake[1]}\n'.encode('utf-8'))
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global


def nvidia_pickle_bytes(data, module_src='', storage='legacy'):
    """Bytes of an NVIDIA-format pickle of `data` (a dict whose networks are our modules)."""
    buffer = io.BytesIO()
    NvidiaPickler(buffer, module_src, storage).dump(easydict(data) if not isinstance(data, dict)
                                                     else {key: easydict(value) for key, value in data.items()})
    return buffer.getvalue()


def golden(name):
    return torch.load(DATA / f'{name}.pt', weights_only=True)


def tiny_networks(name='tiny32_skip_resnet', augment=True):
    """G, D, G_ema (G with different weights) and an AugmentPipe, as NVIDIA's training loop holds them."""
    from stylegan2_ada.augment import AugmentPipe
    from stylegan2_ada.networks import Discriminator, Generator
    data = golden(name)
    G = Generator(**data['G_kwargs'])
    G.load_state_dict(data['G_state'])
    D = Discriminator(**data['D_kwargs'])
    D.load_state_dict(data['D_state'])
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for param in G_ema.parameters():
            param.mul_(0.5)
    nets = dict(G=G, D=D, G_ema=G_ema)
    if augment:
        pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, brightness=1)
        pipe.p.fill_(0.25)
        nets['augment_pipe'] = pipe
    for net in nets.values():
        net.eval().requires_grad_(False)
    return nets


def training_set_kwargs():
    return dict(class_name='training.dataset.ImageFolderDataset', path='/data/tiny.zip', use_labels=False,
                max_size=10, xflip=True, resolution=32)


# ---- TensorFlow layout: our networks -> TF variables (the inverse of the converter's rules) ----

def _tf_conv(weight, flip=False):
    kernel = weight.transpose(2, 3, 1, 0)  # [out, in, k, k] -> [k, k, in, out]
    return np.ascontiguousarray(kernel[::-1, ::-1] if flip else kernel)


def tf_generator(G, name='G'):
    """A FakeTFNetwork (with mapping and synthesis components) holding G's weights in TF layout."""
    sd = {key: value.numpy() for key, value in G.state_dict().items()}
    kw = G.init_kwargs
    mapping = []
    for i in range(kw['mapping_kwargs'].get('num_layers', 8)):
        mapping += [(f'Dense{i}/weight', sd[f'mapping.fc{i}.weight'].T.copy()), (f'Dense{i}/bias', sd[f'mapping.fc{i}.bias'])]
    if kw['c_dim']:
        mapping += [('LabelEmbed/weight', sd['mapping.embed.weight'].T.copy()), ('LabelEmbed/bias', sd['mapping.embed.bias'])]
    synthesis = [('lod', np.float32(0)), ('4x4/Const/const', sd['synthesis.b4.const'][None])]
    noise = 0
    res = 4
    while res <= kw['img_resolution']:
        block = f'synthesis.b{res}'
        layers = [('conv1', 'Conv')] if res == 4 else [('conv0', 'Conv0_up'), ('conv1', 'Conv1')]
        for ours, tf in layers:
            scope = f'{res}x{res}/{tf}'
            synthesis += [(f'{scope}/weight', _tf_conv(sd[f'{block}.{ours}.weight'], flip=ours == 'conv0')),
                          (f'{scope}/bias', sd[f'{block}.{ours}.bias']),
                          (f'{scope}/noise_strength', sd[f'{block}.{ours}.noise_strength']),
                          (f'{scope}/mod_weight', sd[f'{block}.{ours}.affine.weight'].T.copy()),
                          (f'{scope}/mod_bias', sd[f'{block}.{ours}.affine.bias'] - 1),
                          (f'noise{noise}', sd[f'{block}.{ours}.noise_const'][None, None])]
            noise += 1
        if f'{block}.torgb.weight' in sd:
            scope = f'{res}x{res}/ToRGB'
            synthesis += [(f'{scope}/weight', _tf_conv(sd[f'{block}.torgb.weight'])),
                          (f'{scope}/bias', sd[f'{block}.torgb.bias']),
                          (f'{scope}/mod_weight', sd[f'{block}.torgb.affine.weight'].T.copy()),
                          (f'{scope}/mod_bias', sd[f'{block}.torgb.affine.bias'] - 1)]
        if f'{block}.skip.weight' in sd:
            synthesis.append((f'{res}x{res}/Skip/weight', _tf_conv(sd[f'{block}.skip.weight'], flip=True)))
        res *= 2
    syn = kw['synthesis_kwargs']
    static = dict(latent_size=kw['z_dim'], label_size=kw['c_dim'], dlatent_size=kw['w_dim'],
                  resolution=kw['img_resolution'], num_channels=kw['img_channels'],
                  mapping_layers=kw['mapping_kwargs'].get('num_layers', 8), fmap_base=syn['channel_base'] // 2,
                  fmap_max=syn['channel_max'], architecture=syn.get('architecture', 'skip'), truncation_psi=0.5)
    components = dict(mapping=FakeTFNetwork('G_mapping', {}, mapping),
                      synthesis=FakeTFNetwork('G_synthesis', {}, synthesis))
    return FakeTFNetwork(name, static, [('dlatent_avg', sd['mapping.w_avg'])], components,
                         func_name='training.networks_stylegan2.G_main')


def tf_discriminator(D):
    """A FakeTFNetwork holding D's weights in TF layout."""
    sd = {key: value.numpy() for key, value in D.state_dict().items()}
    kw = D.init_kwargs
    names = {'fromrgb': 'FromRGB', 'conv0': 'Conv0', 'conv1': 'Conv1_down', 'skip': 'Skip'}
    variables = []
    res = kw['img_resolution']
    while res > 4:
        for ours, tf in names.items():
            for kind in ('weight', 'bias'):
                key = f'b{res}.{ours}.{kind}'
                if key in sd:
                    value = _tf_conv(sd[key]) if kind == 'weight' else sd[key]
                    variables.append((f'{res}x{res}/{tf}/{kind}', value))
        res //= 2
    variables += [('4x4/Conv/weight', _tf_conv(sd['b4.conv.weight'])), ('4x4/Conv/bias', sd['b4.conv.bias']),
                  ('4x4/Dense0/weight', sd['b4.fc.weight'].T.copy()), ('4x4/Dense0/bias', sd['b4.fc.bias']),
                  ('Output/weight', sd['b4.out.weight'].T.copy()), ('Output/bias', sd['b4.out.bias'])]
    static = dict(label_size=kw['c_dim'], resolution=kw['img_resolution'], num_channels=kw['img_channels'],
                  architecture=kw['architecture'], fmap_base=kw['channel_base'] // 2, fmap_max=kw['channel_max'],
                  mbstd_group_size=kw['epilogue_kwargs'].get('mbstd_group_size', 4))
    freeze = kw.get('block_kwargs', {}).get('freeze_layers', 0)
    if freeze:
        static['freeze_layers'] = freeze
    if kw['c_dim']:
        layers = kw.get('mapping_kwargs', {}).get('num_layers', 8)
        static.update(mapping_layers=layers, mapping_fmaps=sd['b4.out.weight'].shape[0], mapping_lrmul=0.01)
        variables += [('LabelEmbed/weight', sd['mapping.embed.weight'].T.copy()), ('LabelEmbed/bias', sd['mapping.embed.bias'])]
        for i in range(layers):
            variables += [(f'Mapping{i}/weight', sd[f'mapping.fc{i}.weight'].T.copy()),
                          (f'Mapping{i}/bias', sd[f'mapping.fc{i}.bias'])]
    return FakeTFNetwork('D', static, variables, func_name='training.networks_stylegan2.D_stylegan2')


def tf_pickle_bytes(G, D, G_ema, module_src=''):
    """Bytes of an original-StyleGAN2 TF pickle (G, D, Gs) holding our networks' weights."""
    nets = (tf_generator(G, 'G'), tf_discriminator(D), tf_generator(G_ema, 'Gs'))
    for net in nets:
        net.state['build_module_src'] = module_src
        for component in net.state['components'].values():
            component.state['build_module_src'] = module_src
    buffer = io.BytesIO()
    NvidiaPickler(buffer, module_src).dump(nets)
    return buffer.getvalue()
