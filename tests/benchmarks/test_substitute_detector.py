"""benchmarks/substitute_detector.py: NVIDIA's call convention, the LPIPS-style distance and
NT-Xent by hand, deterministic training, the cache; and gda_core.metrics taking it in place of
NVIDIA's files (the detector_paths extension point)."""

import math
import pathlib

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from gda_core.metrics import evaluate
from gda_core.metrics.evaluation import latents, quantize
from gda_core.metrics.fid import fid_from_features
from gda_core.metrics.intra_lpips import intra_cluster_lpips
from gda_core.metrics.kid import kernel_inception_distance

import substitute_detector as SD  # by name: see conftest.py
from gda_testkit import plugins as HP


def random_images(count, res=32, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).randint(0, 256, [count, 3, res, res]).astype(np.uint8))


def encoder(seed=0):
    torch.manual_seed(seed)
    return SD.EmojiEncoder().eval()


def test_features_follow_nvidias_convention_and_lie_on_a_sphere():
    enc = encoder()
    images = random_images(5).float()   # [0, 255], as NVIDIA's detectors take them
    with torch.no_grad():
        features = enc(images, return_features=True)
        assert features.shape == (5, SD.EMBED_DIM)
        assert torch.allclose(features.norm(dim=1), torch.full([5], math.sqrt(SD.EMBED_DIM)), atol=1e-4)
        # Other sizes are resized to the encoder's 32 px (area down, bilinear up).
        big = F.interpolate(images, scale_factor=2, mode='nearest')
        assert torch.allclose(enc(big, return_features=True), features, atol=1e-4)
    with pytest.raises(ValueError, match='no class probabilities'):
        enc(images, no_output_bias=True)


def test_lpips_features_give_the_unit_weight_lpips_distance_by_hand():
    enc = encoder()
    a, b = random_images(2, seed=1).float(), random_images(2, seed=2).float()
    with torch.no_grad():
        distance = (enc(a, return_lpips=True) - enc(b, return_lpips=True)).square().sum(1)
        stages_a, stages_b = enc.stage_outputs(a / 127.5 - 1), enc.stage_outputs(b / 127.5 - 1)
    expected = torch.zeros(2)
    for fa, fb in zip(stages_a, stages_b):
        ua = fa / fa.norm(dim=1, keepdim=True)
        ub = fb / fb.norm(dim=1, keepdim=True)
        expected += (ua - ub).square().sum(1).mean(dim=(1, 2)) / len(stages_a)   # spatial mean
    assert torch.allclose(distance, expected, rtol=1e-4)
    with torch.no_grad():
        assert float((enc(a, return_lpips=True) - enc(a, return_lpips=True)).abs().max()) == 0


def test_nt_xent_by_hand():
    a = torch.tensor([[1., 0.], [0., 1.]])
    b = torch.tensor([[1., 0.], [0., 1.]])
    t = 0.5
    # View 0 (a0): positive b0 (cos 1), negatives a1 and b1 (cos 0); same for every view.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert SD.nt_xent(a, b, t).item() == pytest.approx(expected, rel=1e-6)


def test_training_is_deterministic_for_a_seed_and_the_cache_returns_it(tmp_path, monkeypatch):
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path))
    images = random_images(12)
    first, info = SD.train_encoder(images, seed=3, steps=3, batch=8)
    second, _ = SD.train_encoder(images, seed=3, steps=3, batch=8)
    other, _ = SD.train_encoder(images, seed=4, steps=3, batch=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.embed.weight, other.embed.weight)
    assert not torch.equal(first.embed.weight, encoder().embed.weight)   # it trained
    assert set(info) == {'final_loss', 'retrieval_top1'} and 0 <= info['retrieval_top1'] <= 1

    trained, info = SD.load_or_train(images, seed=3, steps=3, batch=8)
    assert info['cached'] is None and info['key'] == SD.cache_key(images, 3, dict(SD.DEFAULTS, steps=3, batch=8))
    cached, info2 = SD.load_or_train(images, seed=3, steps=3, batch=8)
    assert info2['cached'] and pathlib.Path(info2['cached']).parent == tmp_path / SD.CACHE_SUBDIR
    for key, value in trained.state_dict().items():
        assert torch.equal(value, cached.state_dict()[key]), key
    _, info3 = SD.load_or_train(images, seed=3, steps=4, batch=8)     # other settings: retrained
    assert info3['cached'] is None and info3['key'] != info['key']


def test_metrics_take_the_substitute_in_place_of_nvidias_files(tiny, tmp_path, monkeypatch):
    """The extension point: detector_paths values may be modules; results equal the maths applied
    to the module's own features of the same images."""
    monkeypatch.setenv('GDA_CACHE_DIR', str(tmp_path / 'cache'))
    data, source = tiny
    G = HP.tiny_networks()[0]
    enc = encoder()
    records = evaluate(['kid', 'fid', 'intra_lpips'], G, data=data, num_gen=20, seed=5, batch=8,
                       noise_mode='const', detector_paths=dict(inception=enc, vgg16=enc), use_cache=False)
    with torch.no_grad():
        images = quantize(G(latents(G.z_dim, 0, 20, 5), torch.zeros([20, 0]), noise_mode='const'))
        real = torch.from_numpy(np.stack([np.array(PIL.Image.open(p)).transpose(2, 0, 1)
                                          for p in sorted(pathlib.Path(data).glob('*.png'))]))
        gen_f = enc(images.float(), return_features=True).double().numpy()
        real_f = enc(real.float(), return_features=True).double().numpy()
    assert records['kid']['results']['kid'] == pytest.approx(kernel_inception_distance(gen_f, real_f, seed=5), rel=1e-4)
    assert records['fid']['results']['fid'] == pytest.approx(fid_from_features(gen_f, real_f), rel=1e-4)
    score, _ = intra_cluster_lpips(enc, [images[:8], images[8:16], images[16:]], real, batch=8)
    assert records['intra_lpips']['results']['intra_lpips'] == pytest.approx(score, rel=1e-4)


def test_colour_views_turn_hue_about_the_grey_axis_and_grey_a_fifth():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand([2000, 3, 4, 4], generator=generator) * 0.6 - 0.3   # no clamping
    out = SD.recolour(images, generator)
    # A rotation about (1, 1, 1) and a saturation change about the grey value keep each pixel's
    # channel mean; the colours themselves change.
    assert torch.allclose(out.mean(dim=1), images.mean(dim=1), atol=1e-6)
    assert (out - images).abs().mean() > 0.05
    grey = (out.std(dim=1) < 1e-6).all(dim=(1, 2)).float().mean()
    assert 0.16 < grey < 0.24
    flat = torch.full([4, 3, 4, 4], 0.25)   # a grey image stays itself
    assert torch.allclose(SD.recolour(flat, generator), flat, atol=1e-6)


def test_geometry_views_keep_the_keys_made_before_views_existed():
    images = torch.zeros([2, 3, 32, 32], dtype=torch.uint8)
    before = SD.cache_key(images, 0, dict(steps=600, batch=64, lr=2e-3, temperature=0.2))
    settings = dict(steps=600, batch=64, lr=2e-3, temperature=0.2)
    assert SD.cache_key(images, 0, dict(settings, views='geometry')) == before
    assert SD.cache_key(images, 0, dict(settings, views='colour')) != before
    assert SD.DEFAULTS['views'] == 'colour'
    with pytest.raises(ValueError, match='views'):
        SD.train_encoder(images, steps=1, views='hue')
    assert SD.limits('geometry')[-1] != SD.limits('colour')[-1]
