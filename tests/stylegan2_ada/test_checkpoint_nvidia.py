"""NVIDIA StyleGAN2-ADA pickles: rebuilt as our classes, nothing in them executed."""

import io
import os
import pickle

import pytest
import torch

import stylegan2_ada
from stylegan2_ada.checkpoint.safe_pickle import safe_unpickle
from stylegan2_ada.errors import UserError

pytestmark = pytest.mark.usefixtures('isolated_cache')


def _evil_src(marker):
    """Module source that would leave a marker file (and call os.system) if it were ever executed."""
    return (f'import os\nos.system("touch {marker}.system")\nopen({str(marker)!r}, "w").write("ran")\n'
            f'class Generator:\n    pass\n')


@pytest.fixture(scope='module')
def nets(ckpt):
    return ckpt.tiny_networks('tiny32_cond_orig_freeze2')


def _write(tmp_path, ckpt, nets, storage='legacy', module_src='', name='net.pkl'):
    path = tmp_path / name
    data = dict(nets, training_set_kwargs=ckpt.training_set_kwargs())
    path.write_bytes(ckpt.nvidia_pickle_bytes(data, module_src=module_src, storage=storage))
    return path


def _same_outputs(ckpt, mine, theirs):
    for key in ('G', 'D', 'G_ema', 'augment_pipe'):
        torch.testing.assert_close(mine[key].state_dict(), theirs[key].state_dict(), rtol=0, atol=0)
    golden = ckpt.golden('tiny32_cond_orig_freeze2')
    z, c = golden['z'][:2], golden['c'][:2]
    img = theirs['G_ema'](z, c, noise_mode='const')
    torch.testing.assert_close(mine['G_ema'](z, c, noise_mode='const'), img, rtol=0, atol=0)
    torch.testing.assert_close(mine['D'](img, c), theirs['D'](img, c), rtol=0, atol=0)


@pytest.mark.parametrize('storage', ['legacy', 'zip'])
def test_nvidia_pickle_rebuilds_our_classes_with_identical_outputs(tmp_path, ckpt, nets, storage):
    marker = tmp_path / 'marker'
    path = _write(tmp_path, ckpt, nets, storage, module_src=_evil_src(marker))
    data = stylegan2_ada.load(path)
    assert not marker.exists() and not os.path.exists(f'{marker}.system')
    assert type(data['G']) is type(nets['G']) and type(data['D']) is type(nets['D'])
    assert data['origin']['format'] == 'nvidia-pickle'
    assert data['training_set_kwargs'] == ckpt.training_set_kwargs()
    assert type(data['training_set_kwargs']) is dict
    _same_outputs(ckpt, data, nets)
    assert all(not p.requires_grad for p in data['G'].parameters()) and not data['G'].training


def test_legacy_pickle_uses_nested_torch_save_bytes(tmp_path, ckpt, nets):
    raw = _write(tmp_path, ckpt, nets, 'legacy').read_bytes()
    assert b'torch.storage\n_load_from_bytes' in raw
    assert b'\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19' in raw  # the legacy torch.save magic number, nested


def test_frozen_layers_stay_buffers_and_augment_pipe_loads(tmp_path, ckpt, nets):
    data = stylegan2_ada.load(_write(tmp_path, ckpt, nets))
    buffers = dict(data['D'].named_buffers())
    params = dict(data['D'].named_parameters())
    assert 'b32.fromrgb.weight' in buffers and 'b32.conv0.bias' in buffers
    assert 'b32.conv1.weight' in params
    pipe = data['augment_pipe']
    assert type(pipe).__name__ == 'AugmentPipe'
    assert pipe.init_kwargs == nets['augment_pipe'].init_kwargs
    assert float(pipe.p) == 0.25


def test_record_structure_matches_nvidia(tmp_path, ckpt, nets):
    record = safe_unpickle(io.BytesIO(_write(tmp_path, ckpt, nets).read_bytes()))['G']
    assert record.class_name == 'Generator' and record.version == 6
    assert record.init_kwargs == nets['G'].init_kwargs
    children = dict(record.children())
    assert children['synthesis'].class_name == 'SynthesisNetwork'
    assert dict(children['synthesis'].children())['b4'].class_name == 'SynthesisBlock'


class _System:
    """Pickles as a call of os.system (posix.system on Linux)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Eval:
    def __reduce__(self):
        return eval, ('1 + 1',)


def test_pickle_calling_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps({'G': _System(f'touch {marker}')}))
    with pytest.raises(UserError, match=r'refusing to load the pickle: it asks for (posix|os|nt)\.system'):
        stylegan2_ada.load(path)
    assert not marker.exists()


def test_code_hidden_in_a_record_is_refused(tmp_path, ckpt, nets):
    marker = tmp_path / 'pwned'
    pipe = nets['augment_pipe']
    kwargs = pipe.init_kwargs
    pipe.init_kwargs = dict(kwargs, xflip=_System(f'touch {marker}'))  # pickled inside the record
    try:
        path = tmp_path / 'evil.pkl'
        path.write_bytes(ckpt.nvidia_pickle_bytes({'augment_pipe': pipe}))
    finally:
        pipe.init_kwargs = kwargs
    assert b'touch' in path.read_bytes()
    with pytest.raises(UserError, match=r'\.system'):
        stylegan2_ada.load(path)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps([_Eval()]))
    with pytest.raises(UserError, match=r'builtins\.eval'):
        stylegan2_ada.load(path)


def test_unknown_network_class_is_refused_by_name(tmp_path, ckpt):
    class EvilNet(torch.nn.Module):
        pass

    path = tmp_path / 'unknown.pkl'
    path.write_bytes(ckpt.nvidia_pickle_bytes({'G': EvilNet()}))
    with pytest.raises(UserError, match=r"class 'EvilNet' is not one gda rebuilds"):
        stylegan2_ada.load(path)


def test_state_that_does_not_fit_its_kwargs_is_an_error(tmp_path, ckpt, nets):
    """NVIDIA's loader silently drops layers when kwargs and weights disagree; ours names them."""
    G = nets['G']
    kwargs = G.init_kwargs
    G.init_kwargs = dict(kwargs, mapping_kwargs=dict(num_layers=1))
    try:
        path = tmp_path / 'mismatch.pkl'
        path.write_bytes(ckpt.nvidia_pickle_bytes({'G': G}))
    finally:
        G.init_kwargs = kwargs
    with pytest.raises(UserError, match=r'G in the file does not fit .*unexpected mapping\.fc1\.weight'):
        stylegan2_ada.load(path)


def test_sub_module_of_another_class_is_an_error(tmp_path, ckpt, nets):
    D = nets['D']
    original = D.b4.mbstd
    D.b4.mbstd = torch.nn.Identity()
    try:
        path = tmp_path / 'odd.pkl'
        path.write_bytes(ckpt.nvidia_pickle_bytes({'D': D}))
    finally:
        D.b4.mbstd = original
    with pytest.raises(UserError, match=r'Identity at b4\.mbstd, where our network has a MinibatchStdLayer'):
        stylegan2_ada.load(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('hello')
    with pytest.raises(UserError, match='is not a checkpoint'):
        stylegan2_ada.load(path)
