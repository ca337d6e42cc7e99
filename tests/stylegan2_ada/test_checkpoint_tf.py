"""Original StyleGAN2 TensorFlow pickles: converted by variable names, without TensorFlow."""

import io

import numpy as np
import pytest
import torch

import stylegan2_ada
from stylegan2_ada.errors import UserError

pytestmark = pytest.mark.usefixtures('isolated_cache')


@pytest.mark.parametrize('config', ['tiny32_skip_resnet', 'tiny32_cond_orig_freeze2'])
def test_tf_round_trip_gives_the_same_networks(tmp_path, ckpt, config):
    """Our weights -> TF layout (inverse rules, in the helpers) -> converter -> the same outputs."""
    nets = ckpt.tiny_networks(config, augment=False)
    marker = tmp_path / 'ran'
    path = tmp_path / 'stylegan2-tf.pkl'
    path.write_bytes(ckpt.tf_pickle_bytes(nets['G'], nets['D'], nets['G_ema'],
                                          module_src=f'open({str(marker)!r}, "w")\n'))
    data = stylegan2_ada.load(path)
    assert not marker.exists()
    assert data['origin']['format'] == 'tf-pickle'
    golden = ckpt.golden(config)
    z, c = golden['z'][:2], golden['c'][:2]
    for key, psi in (('G', 1), ('G_ema', 0.7)):
        theirs, mine = nets[key], data[key]
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        torch.testing.assert_close(mine.state_dict(), theirs.state_dict())  # exact but for mod_bias -1 +1
        torch.testing.assert_close(mine(z, c, truncation_psi=psi, noise_mode='const'),
                                   theirs(z, c, truncation_psi=psi, noise_mode='const'))
    img = nets['G'](z, c, noise_mode='const')
    torch.testing.assert_close(data['D'].state_dict(), nets['D'].state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(data['D'](img, c), nets['D'](img, c), rtol=0, atol=0)
    assert data['G'].init_kwargs['synthesis_kwargs']['channel_base'] == \
        nets['G'].init_kwargs['synthesis_kwargs']['channel_base']  # fmap_base * 2


def test_frozen_layers_from_tf_kwargs(tmp_path, ckpt):
    nets = ckpt.tiny_networks('tiny32_cond_orig_freeze2', augment=False)
    path = tmp_path / 'tf.pkl'
    path.write_bytes(ckpt.tf_pickle_bytes(nets['G'], nets['D'], nets['G_ema']))
    buffers = dict(stylegan2_ada.load(path)['D'].named_buffers())
    assert 'b32.fromrgb.weight' in buffers


def _tf_G(ckpt):
    return ckpt.tiny_networks('tiny32_skip_resnet', augment=False)


def _write(tmp_path, ckpt, nets, edit):
    G, D = ckpt.tf_generator(nets['G'], 'G'), ckpt.tf_discriminator(nets['D'])
    Gs = ckpt.tf_generator(nets['G_ema'], 'Gs')
    edit(G)
    buffer = io.BytesIO()
    ckpt.NvidiaPickler(buffer, '').dump((G, D, Gs))
    path = tmp_path / 'tf.pkl'
    path.write_bytes(buffer.getvalue())
    return path


def test_unknown_tf_kwarg_is_an_error(tmp_path, ckpt):
    path = _write(tmp_path, ckpt, _tf_G(ckpt), lambda G: G.state['static_kwargs'].update(fmap_decay=0.5))
    with pytest.raises(UserError, match='G: unknown TensorFlow kwargs fmap_decay'):
        stylegan2_ada.load(path)


def test_missing_tf_variable_is_an_error(tmp_path, ckpt):
    def drop(G):
        synthesis = G.state['components']['synthesis'].state
        synthesis['variables'] = [(n, v) for n, v in synthesis['variables'] if n != '16x16/Conv1/mod_bias']
    with pytest.raises(UserError, match=r'lacks synthesis/16x16/Conv1/mod_bias \(needed for synthesis\.b16\.conv1\.affine\.bias\)'):
        stylegan2_ada.load(_write(tmp_path, ckpt, _tf_G(ckpt), drop))


def test_unused_tf_variable_is_an_error(tmp_path, ckpt):
    def add(G):
        G.state['components']['mapping'].state['variables'].append(('LabelConcat/weight', np.zeros((3, 32), np.float32)))
    with pytest.raises(UserError, match='no place in our network: mapping/LabelConcat/weight'):
        stylegan2_ada.load(_write(tmp_path, ckpt, _tf_G(ckpt), add))


def test_old_tf_network_version_is_an_error(tmp_path, ckpt):
    path = _write(tmp_path, ckpt, _tf_G(ckpt), lambda G: G.state.update(version=2))
    with pytest.raises(UserError, match='version 2 is too old'):
        stylegan2_ada.load(path)
