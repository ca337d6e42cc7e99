"""AugmentPipe and the ADA controller: each augmentation does what it claims, differentiably."""

import math

import pytest
import torch

from stylegan2_ada.augment import AUGPIPE_SPECS, AdaController, AugmentPipe
from stylegan2_ada.ops import conv2d_gradfix, grid_sample_gradfix
from stylegan2_ada.persistence import registered_class

ALL = set(AUGPIPE_SPECS['bgcfnc'])


def smooth_image(n=2, c=3, size=32, seed=0):
    """Smooth, asymmetric images: the wavelet resampling reproduces them almost exactly."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn([n, c, 4, 4], generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode='bicubic', align_corners=True)


def noise_image(n=2, c=3, size=16, seed=0):
    return torch.randn([n, c, size, size], generator=torch.Generator().manual_seed(seed))


def luma(x):
    return x.mean(dim=1, keepdim=True)


# ---------------------------------------------------------------- construction

def test_presets_are_nvidias_groups_and_unions():
    blit, geom = {'xflip', 'rotate90', 'xint'}, {'scale', 'rotate', 'aniso', 'xfrac'}
    color = {'brightness', 'contrast', 'lumaflip', 'hue', 'saturation'}
    expected = dict(blit=blit, geom=geom, color=color, filter={'imgfilter'}, noise={'noise'},
                    cutout={'cutout'}, bg=blit | geom, bgc=blit | geom | color,
                    bgcf=blit | geom | color | {'imgfilter'},
                    bgcfn=blit | geom | color | {'imgfilter', 'noise'},
                    bgcfnc=blit | geom | color | {'imgfilter', 'noise', 'cutout'})
    assert {name: set(spec) for name, spec in AUGPIPE_SPECS.items()} == expected
    for spec in AUGPIPE_SPECS.values():
        assert set(spec.values()) == {1}
        pipe = AugmentPipe(**spec)
        assert all(getattr(pipe, name) == 1.0 for name in spec)
        assert all(getattr(pipe, name) == 0.0 for name in ALL - set(spec))


def test_buffers_and_kwargs_match_nvidia_records():
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgc'], imgfilter_bands=[1, 0, 1, 0])
    assert {name: tuple(b.shape) for name, b in pipe.named_buffers()} == {
        'p': (), 'Hz_geom': (12,), 'Hz_fbank': (4, 43)}
    assert float(pipe.p) == 1.0  # NVIDIA starts at 1; the training loop sets it
    assert pipe.init_kwargs['imgfilter_bands'] == [1, 0, 1, 0] and pipe.init_kwargs['hue'] == 1
    assert registered_class('AugmentPipe') is AugmentPipe
    rebuilt = AugmentPipe(**pipe.init_kwargs)
    rebuilt.load_state_dict(pipe.state_dict(), strict=True)


def test_wavelet_filters_are_orthogonal_and_bank_is_perfect_reconstruction():
    # Any mistyped sym6 coefficient breaks orthogonality: autocorrelation at even lags = impulse.
    h = AugmentPipe().Hz_geom.double() * math.sqrt(2)  # back to the unit-norm wavelet
    auto = torch.nn.functional.conv1d(h.reshape(1, 1, -1), h.reshape(1, 1, -1), padding=11).flatten()
    even_lags = auto[1::2]  # lags -10, -8, ..., 10
    assert torch.allclose(even_lags, torch.eye(11, dtype=torch.float64)[5], atol=1e-6)
    assert math.isclose(float(h.sum()), math.sqrt(2), rel_tol=1e-6)
    bank = AugmentPipe().Hz_fbank
    impulse = torch.zeros(43)
    impulse[21] = 1
    assert torch.allclose(bank.sum(dim=0), impulse, atol=1e-6)
    assert torch.allclose(bank[0].sum(), torch.tensor(1.0))  # band 0 carries DC, the rest none
    assert torch.allclose(bank[1:].sum(dim=1), torch.zeros(3), atol=1e-6)


def test_p_zero_is_exactly_identity():
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgcfnc'])
    pipe.p.zero_()
    x = noise_image(size=32)
    assert torch.equal(pipe(x), x)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='1 or 3 channels'):
        AugmentPipe(brightness=1)(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match='imgfilter'):
        AugmentPipe(imgfilter=1)(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter_bands=[1, 1])


# ---------------------------------------------------------------- pixel blitting

def test_xflip_mirrors():
    pipe = AugmentPipe(xflip=1)
    x = smooth_image()
    # The flip runs through the wavelet resampler, as in NVIDIA's pipeline; sym6 is only nearly
    # symmetric, so a mirrored image comes out slightly filtered (see the impulse test below).
    assert torch.allclose(pipe(x, debug_percentile=0.75), x.flip(3), atol=0.1)
    assert torch.allclose(pipe(x, debug_percentile=0.25), x, atol=1e-5)
    assert (x.flip(3) - x).abs().max() > 2
    torch.manual_seed(1)
    y = pipe(x.repeat(8, 1, 1, 1))
    flipped = [bool((y[i] - x[i % 2].flip(2)).abs().max() < 0.1) for i in range(16)]
    kept = [bool((y[i] - x[i % 2]).abs().max() < 1e-5) for i in range(16)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_flip_kernel_is_the_even_taps_of_the_wavelet_self_convolution():
    # Mirroring in the upsampled domain turns up/down-sampling's autocorrelation (an exact
    # impulse for an orthogonal wavelet) into a self-convolution: that is the residual kernel.
    x = torch.zeros(1, 1, 32, 32)
    x[..., 16, 16] = 1
    y = AugmentPipe(xflip=1)(x, debug_percentile=0.75)[0, 0]
    h = AugmentPipe().Hz_geom.double() * math.sqrt(2)
    self_conv = torch.nn.functional.conv1d(h.reshape(1, 1, -1), h.flip(0).reshape(1, 1, -1), padding=11)
    kernel = self_conv.flatten()[0::2].flip(0)
    assert torch.allclose(y[16, 9:21].double(), kernel, atol=1e-5)  # main tap 0.965 at column 15
    assert float(y[16, 15]) > 0.96 and torch.allclose(y[16].sum(), torch.tensor(1.0), atol=1e-5)
    assert y[16, :9].abs().max() < 1e-5 and y[16, 21:].abs().max() < 1e-5
    assert y[:16].abs().max() < 1e-5 and y[17:].abs().max() < 1e-5  # rows untouched


def test_rotate90_matches_torch_rot90():
    pipe = AugmentPipe(rotate90=1)
    x = smooth_image()
    for k in range(4):
        y = pipe(x, debug_percentile=k / 4 + 0.1)
        assert torch.allclose(y, torch.rot90(x, k, dims=(2, 3)), atol=0.1), k
        assert all((y - torch.rot90(x, j, dims=(2, 3))).abs().max() > 2 for j in range(4) if j != k)


def test_integer_translation_moves_pixels_exactly():
    pipe = AugmentPipe(xint=1)
    x = noise_image()
    y = pipe(x, debug_percentile=0.9)  # t = 0.8 * xint_max = 0.1 of 16 px -> 2 px right and down
    assert torch.allclose(y[..., 2:, 2:], x[..., :-2, :-2], atol=1e-4)
    y = pipe(x, debug_percentile=0.1)
    assert torch.allclose(y[..., :-2, :-2], x[..., 2:, 2:], atol=1e-4)
    # The uncovered border comes from reflection, not zeros: after moving 2 px left, output
    # column 15 reads input column 17, reflected to 13, and column 14 reads 16, reflected to 14.
    assert torch.allclose(y[..., :-2, -1], x[..., 2:, -3], atol=1e-4)
    assert torch.allclose(y[..., :-2, -2], x[..., 2:, -2], atol=1e-4)


# ---------------------------------------------------------------- general geometry

@pytest.mark.parametrize('name', ['scale', 'rotate', 'aniso', 'xfrac'])
def test_general_geometry_changes_image_and_keeps_size(name):
    pipe = AugmentPipe(**{name: 1})
    x = smooth_image()
    y = pipe(x, debug_percentile=0.9)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().max() > 0.05
    assert torch.allclose(pipe(x, debug_percentile=0.5), x, atol=1e-5)  # median = no transform


def test_scale_magnifies_about_the_centre():
    pipe = AugmentPipe(scale=1)
    grid = torch.arange(32) - 15.5
    blob = torch.exp(-(grid[:, None].square() + grid[None, :].square()) / (2 * 3.0 ** 2))[None, None]

    def moments(img):  # centre and second moment of the column profile
        profile = img[0, 0].sum(0) / img[0, 0].sum()
        return float((profile * grid).sum()), float((profile * grid.square()).sum())

    for percentile in (0.9, 0.1):
        s = 2 ** (float(torch.erfinv(torch.tensor(percentile * 2 - 1))) * 0.2)  # > 1 at 0.9
        centre, spread = moments(pipe(blob, debug_percentile=percentile))
        assert abs(centre) < 0.01
        assert spread / moments(blob)[1] == pytest.approx(s ** 2, rel=0.03)


# ---------------------------------------------------------------- colour

def test_brightness_adds_a_constant():
    x = noise_image()
    y = AugmentPipe(brightness=1)(x, debug_percentile=0.8)
    b = float(torch.erfinv(torch.tensor(0.6))) * 0.2
    assert torch.allclose(y - x, torch.full_like(x, b), atol=1e-5)


def test_contrast_scales():
    x = noise_image()
    y = AugmentPipe(contrast=1)(x, debug_percentile=0.8)
    c = 2 ** (float(torch.erfinv(torch.tensor(0.6))) * 0.5)
    assert torch.allclose(y, x * c, atol=1e-5)


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = noise_image()
    y = AugmentPipe(lumaflip=1)(x, debug_percentile=0.75)
    assert torch.allclose(luma(y), -luma(x), atol=1e-5)
    assert torch.allclose(y - luma(y), x - luma(x), atol=1e-5)
    assert torch.allclose(AugmentPipe(lumaflip=1)(x, debug_percentile=0.25), x, atol=1e-6)


def test_hue_rotates_chroma_around_the_grey_axis():
    x = noise_image()
    y = AugmentPipe(hue=1)(x, debug_percentile=0.7)  # 0.4 * pi
    assert torch.allclose(luma(y), luma(x), atol=1e-5)
    chroma_x, chroma_y = x - luma(x), y - luma(y)
    assert torch.allclose(chroma_y.norm(dim=1), chroma_x.norm(dim=1), atol=1e-5)
    # Right-handed (Rodrigues) rotation about v: chroma -> chroma cos + (v x chroma) sin.
    v = torch.full([1, 3, 1, 1], 1 / math.sqrt(3)).expand_as(chroma_x)
    theta = 0.4 * math.pi
    expected = chroma_x * math.cos(theta) + torch.linalg.cross(v, chroma_x, dim=1) * math.sin(theta)
    assert torch.allclose(chroma_y, expected, atol=1e-5)
    grey = torch.randn(1, 1, 8, 8)
    assert torch.equal(AugmentPipe(hue=1)(grey, debug_percentile=0.7), grey)  # no hue without colour


def test_saturation_scales_chroma_and_keeps_luma():
    x = noise_image()
    y = AugmentPipe(saturation=1)(x, debug_percentile=0.8)
    s = 2 ** float(torch.erfinv(torch.tensor(0.6)))
    assert torch.allclose(luma(y), luma(x), atol=1e-5)
    assert torch.allclose(y - luma(y), (x - luma(x)) * s, atol=1e-5)


def test_greyscale_images_get_the_colour_matrix_average():
    x = noise_image(c=1)
    y = AugmentPipe(brightness=1, contrast=1)(x, debug_percentile=0.8)
    b = float(torch.erfinv(torch.tensor(0.6))) * 0.2
    c = 2 ** (float(torch.erfinv(torch.tensor(0.6))) * 0.5)
    assert torch.allclose(y, (x + b) * c, atol=1e-5)  # brightness first, then contrast


def test_random_colour_affects_each_image_independently():
    pipe = AugmentPipe(brightness=1)
    pipe.p.fill_(0.5)
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 4, 4)
    y = pipe(x)
    offsets = y[:, 0, 0, 0]
    assert torch.allclose(y.std(dim=(1, 2, 3)), torch.zeros(64), atol=1e-6)  # one offset per image
    unchanged = int((offsets == 0).sum())
    assert 16 < unchanged < 48  # about half at p = 0.5
    assert offsets[offsets != 0].std() > 0.1


# ---------------------------------------------------------------- filtering and corruptions

def test_imgfilter_is_identity_at_unit_gain_and_changes_bands_otherwise():
    pipe = AugmentPipe(imgfilter=1)
    x = noise_image(size=32)
    assert torch.allclose(pipe(x, debug_percentile=0.5), x, atol=1e-5)  # every gain 2^0
    y = pipe(x, debug_percentile=0.9)
    assert (y - x).abs().max() > 0.1
    flat = torch.full([1, 3, 32, 32], 0.7)
    y_flat = AugmentPipe(imgfilter=1, imgfilter_bands=[0, 1, 1, 1])(flat, debug_percentile=0.9)
    # Only high bands amplified: a constant image only sees the power normalisation.
    assert torch.allclose(y_flat, y_flat.mean().expand_as(y_flat), atol=1e-5)


def test_noise_has_the_requested_std():
    x = torch.zeros(4, 3, 32, 32)
    torch.manual_seed(0)
    y = AugmentPipe(noise=1, noise_std=0.1)(x, debug_percentile=0.5)
    sigma = float(torch.erfinv(torch.tensor(0.5))) * 0.1
    assert abs(float(y.std()) / sigma - 1) < 0.03 and abs(float(y.mean())) < 0.01
    # Random mode: per-image sigma = |N(0, 1)| * noise_std, mean noise_std * sqrt(2 / pi).
    y = AugmentPipe(noise=1, noise_std=0.1)(torch.zeros(512, 1, 16, 16))
    assert abs(float(y.std(dim=(1, 2, 3)).mean()) / (0.1 * math.sqrt(2 / math.pi)) - 1) < 0.1


def test_cutout_zeroes_a_rectangle_of_the_right_size():
    x = torch.ones(1, 3, 16, 16)
    y = AugmentPipe(cutout=1)(x, debug_percentile=0.5)
    expected = torch.ones_like(x)
    expected[..., 4:12, 4:12] = 0  # half the size, centred
    assert torch.equal(y, expected)
    torch.manual_seed(0)
    y = AugmentPipe(cutout=1, cutout_size=0.25)(torch.ones(32, 1, 16, 16))
    for img in y[:, 0]:
        rows, cols = (img == 0).any(dim=1), (img == 0).any(dim=0)
        assert rows.sum() <= 4 and cols.sum() <= 4 and (img == 0).sum() == rows.sum() * cols.sum()
        assert rows.sum() >= 2 and cols.sum() >= 2  # centre inside the image


def test_debug_percentile_is_deterministic():
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgcf'], cutout=1)  # noise stays random by design
    x = noise_image(size=32)
    a = pipe(x, debug_percentile=0.3)
    torch.manual_seed(123)
    b = pipe(x, debug_percentile=0.3)
    assert torch.equal(a, b)
    assert (pipe(x, debug_percentile=0.7) - a).abs().max() > 0.1


@pytest.mark.parametrize('margins', [(0, 0, 0, 0), (5, 9, 19, 3), (31, 31, 15, 19)])
def test_resampling_matrices_are_the_padded_wavelet_convolutions(margins):
    # _resample pads and up/downsamples by matmul (sizes vary per batch; matmul needs no new
    # kernels per size): the same numbers as reflect padding + upsample2d / downsample2d.
    from stylegan2_ada.ops import upfirdn2d
    from stylegan2_ada.ops.fir_matrix import apply_separable
    pipe = AugmentPipe(xflip=1)
    my0, my1, mx0, mx1 = margins
    x = noise_image(n=2, size=32, seed=4).double()[..., :20]
    conv = upfirdn2d.upsample2d(torch.nn.functional.pad(x, [mx0, mx1, my0, my1], mode='reflect'),
                                pipe.Hz_geom, up=2)
    mat = apply_separable(x, pipe._pad_upsample_matrix(32, my0, my1, x.dtype),
                          pipe._pad_upsample_matrix(20, mx0, mx1, x.dtype))
    torch.testing.assert_close(mat, conv, rtol=1e-12, atol=1e-12)
    y = noise_image(n=2, size=76, seed=5).double()[..., :52]
    conv = upfirdn2d.downsample2d(y, pipe.Hz_geom, down=2, padding=-6, flip_filter=True)
    mat = apply_separable(y, pipe._crop_downsample_matrix(76, 6, y.dtype),
                          pipe._crop_downsample_matrix(52, 6, y.dtype))
    torch.testing.assert_close(mat, conv, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- gradients

def test_geometric_augmentation_is_linear_with_exact_adjoint_gradient():
    pipe = AugmentPipe(**AUGPIPE_SPECS['bg'])
    x = noise_image(n=4, seed=1).requires_grad_()
    d = noise_image(n=4, seed=2)
    w = noise_image(n=4, seed=3)
    torch.manual_seed(5)
    (grad,) = torch.autograd.grad((pipe(x) * w).sum(), x)
    torch.manual_seed(5)
    aug_d = pipe(d)
    assert aug_d.abs().max() > 0.1 and grad.abs().max() > 0.1
    # For a linear map A: <A^T w, d> = <w, A d>.
    assert torch.allclose((grad * d).sum(), (w * aug_d).sum(), rtol=1e-4)


@pytest.mark.parametrize('preset, gradfix', [('bgc', False), ('bgcfnc', True)])
def test_double_backward_like_r1(preset, gradfix, monkeypatch):
    # The training loop switches the ops to their custom autograd paths, as NVIDIA's does.
    monkeypatch.setattr(grid_sample_gradfix, 'enabled', gradfix)
    monkeypatch.setattr(conv2d_gradfix, 'enabled', gradfix)
    pipe = AugmentPipe(**AUGPIPE_SPECS[preset])
    w = noise_image(n=2, size=32, seed=3)
    seed = 7

    def penalty(x, create_graph):
        x = x.detach().requires_grad_()
        torch.manual_seed(seed)
        logits = (pipe(x).square() * w).sum()  # a non-linear "discriminator"
        (g,) = torch.autograd.grad(logits, x, create_graph=create_graph)
        return x, g.square().sum()

    x0 = noise_image(n=2, size=32, seed=1)
    with conv2d_gradfix.no_weight_gradients():
        x, r1 = penalty(x0, create_graph=True)
    r1.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    # The penalty is a quadratic in x (for fixed random draws): central differences are exact.
    d = noise_image(n=2, size=32, seed=2)
    eps = 1e-2
    fd = (penalty(x0 + eps * d, False)[1] - penalty(x0 - eps * d, False)[1]) / (2 * eps)
    assert torch.allclose((x.grad * d).sum(), fd, rtol=2e-2)


# ---------------------------------------------------------------- ADA controller

def make_controller(p=0.0, **kwargs):
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgc'])
    pipe.p.fill_(p)
    return pipe, AdaController(pipe, **kwargs)


def run_interval(ada, logits, batch=32):
    results = []
    for _ in range(ada.interval):
        ada.accumulate(logits)
        results.append(ada.step(batch))
    return results


def test_ada_raises_p_when_d_is_overconfident_by_the_exact_step():
    pipe, ada = make_controller(p=0.1)
    results = run_interval(ada, torch.tensor([2.0, 1.0, 0.5, -1.0, 3.0]))
    assert results[:3] == [None, None, None]
    # mean sign = (4 - 1) / 5 = 0.6 = target: no change.
    assert results[3] == 0.0 and float(pipe.p) == pytest.approx(0.1)
    results = run_interval(ada, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    step = 32 * 4 / (500 * 1000)
    assert results[3] == pytest.approx(step)
    assert float(pipe.p) == pytest.approx(0.1 + step, abs=1e-7)


def test_ada_lowers_p_otherwise_and_clamps_at_zero():
    pipe, ada = make_controller(p=0.002, kimg=100)
    step = 32 * 4 / (100 * 1000)
    run_interval(ada, torch.tensor([1.0, -1.0, -2.0, 0.5]))  # mean sign 0
    assert float(pipe.p) == pytest.approx(0.002 - step, abs=1e-8)
    run_interval(ada, torch.tensor([-1.0]))
    assert float(pipe.p) == 0.0
    run_interval(ada, torch.tensor([-1.0]))
    assert float(pipe.p) == 0.0


def test_ada_statistics_span_the_interval_and_reset():
    pipe, ada = make_controller(p=0.5)
    # Three confident iterations and one very unconfident one with more samples: mean < target.
    for logits in [torch.ones(2), torch.ones(2), torch.ones(2), -torch.ones(10)]:
        ada.accumulate(logits)
        ada.step(8)
    assert float(pipe.p) == pytest.approx(0.5 - 8 * 4 / 500000, abs=1e-7)
    assert float(ada.sign_count) == 0 and float(ada.sign_sum) == 0
    for _ in range(4):  # an interval without statistics leaves p alone
        assert ada.step(8) in (None, 0.0)
    assert float(pipe.p) == pytest.approx(0.5 - 8 * 4 / 500000, abs=1e-7)


def test_ada_all_reduce_hook_sees_the_statistics():
    pipe, ada = make_controller(p=0.5)
    seen = []

    def other_process_is_unconfident(stats):
        seen.append(stats.clone())
        stats += torch.tensor([-30.0, 30.0], dtype=stats.dtype)

    for _ in range(4):
        ada.accumulate(torch.ones(4))
        ada.step(16, all_reduce=other_process_is_unconfident)
    assert len(seen) == 1 and seen[0].tolist() == [16.0, 16.0]
    assert float(pipe.p) < 0.5


def test_ada_state_round_trips_for_exact_resume(tmp_path):
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(8, generator=gen) + 0.5 for _ in range(20)]
    pipe, ada = make_controller(p=0.2)
    for lg in logits[:6]:  # stop mid-interval, with pending statistics
        ada.accumulate(lg)
        ada.step(8)
    torch.save(ada.state_dict(), tmp_path / 'ada.pt')
    pipe2, ada2 = make_controller(p=0.0)
    ada2.load_state_dict(torch.load(tmp_path / 'ada.pt', weights_only=True))
    assert float(pipe2.p) == float(pipe.p) and ada2.batch_idx == 6
    for lg in logits[6:]:
        for a in (ada, ada2):
            a.accumulate(lg)
            a.step(8)
    assert ada2.p == ada.p == float(pipe.p) and ada.p != pytest.approx(0.2)
