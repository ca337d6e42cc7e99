"""upfirdn2d against scipy (an independent implementation), hand cases, and gradients."""

import numpy as np
import pytest
import scipy.signal
import torch

from stylegan2_ada.ops import upfirdn2d as U


def _scipy_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1):
    """Zero-insert, pad/crop, full 2-D convolution via scipy, decimate; f is a 2-D numpy array."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    x = x.detach().numpy()
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * upy, w * upx))
    z[:, :, ::upy, ::upx] = x
    z = np.pad(z, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    z = z[:, :, max(-py0, 0):z.shape[2] - max(-py1, 0), max(-px0, 0):z.shape[3] - max(-px1, 0)]
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    out = np.stack([np.stack([op(img, f * gain, mode='valid') for img in batch]) for batch in z])
    return torch.from_numpy(out[:, :, ::downy, ::downx].copy())


def _as_2d(f):
    f = f.numpy().astype(np.float64)
    return np.outer(f, f) if f.ndim == 1 else f


FILTERS = {
    '2d_asym': torch.tensor([[1., 2.], [3., -4.], [5., 6.]]),   # fh=3, fw=2, no symmetry
    '1d_sep': torch.tensor([1., -2., 3., 4.]),                   # separable, asymmetric
    'binomial': U.setup_filter([1, 3, 3, 1]),
}


@pytest.mark.parametrize('name', list(FILTERS))
@pytest.mark.parametrize('up,down,padding', [
    (1, 1, 0), (2, 1, [2, 1, 2, 1]), (1, 2, 1), ([2, 1], [1, 3], [1, -1]),
    (3, 2, [3, 0, -1, 2]), (1, 1, [-2, 1, 0, -1]),
])
@pytest.mark.parametrize('flip_filter', [False, True])
def test_matches_scipy(name, up, down, padding, flip_filter):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    f = FILTERS[name]
    y = U.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=4)
    ref = _scipy_upfirdn2d(x, _as_2d(f), U._parse_scaling(up), U._parse_scaling(down),
                           U._parse_padding(padding), flip_filter, gain=4)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_delta_impulse_returns_filter():
    f = torch.tensor([[1., 2.], [3., 4.], [5., 6.]])
    x = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    x[0, 0, 0, 0] = 1
    full = [1, 1, 2, 2]  # pad by (fw-1, fh-1) on every side: 'full' convolution
    y = U.upfirdn2d(x, f, padding=full)
    torch.testing.assert_close(y[0, 0], f.double(), rtol=0, atol=0)
    y = U.upfirdn2d(x, f, padding=full, flip_filter=True)
    torch.testing.assert_close(y[0, 0], f.flip([0, 1]).double(), rtol=0, atol=0)


def test_hand_computed_upsample_1d():
    # Row [1, 2] upsampled by 2 with horizontal taps [1, 1]: each sample is held twice.
    x = torch.tensor([[[[1., 2.]]]])
    y = U.upfirdn2d(x, torch.tensor([[1., 1.]]), up=[2, 1], padding=[1, 0, 0, 0])
    assert y.tolist() == [[[[1., 1., 2., 2.]]]]
    y = U.upfirdn2d(x, None, up=[2, 1], down=[2, 1])
    assert y.tolist() == [[[[1., 2.]]]]


def test_separable_equals_outer_product():
    x = torch.randn(1, 2, 8, 9, dtype=torch.float64)
    f = U.setup_filter([1, 2, 3, 4, 4, 3, 2, 1], normalize=False)  # exact in float32
    assert f.ndim == 1
    y_sep = U.upsample2d(x, f)
    y_2d = U.upsample2d(x, torch.outer(f, f))
    torch.testing.assert_close(y_sep, y_2d, rtol=1e-12, atol=1e-12)


def test_padding_forms_are_equivalent():
    x = torch.randn(1, 1, 5, 5)
    f = FILTERS['binomial']
    a = U.upfirdn2d(x, f, padding=2)
    torch.testing.assert_close(a, U.upfirdn2d(x, f, padding=[2, 2]))
    torch.testing.assert_close(a, U.upfirdn2d(x, f, padding=[2, 2, 2, 2]))
    assert U.upfirdn2d(x, f, up=[2, 1]).shape == U.upfirdn2d(x, f, up=(2, 1)).shape == (1, 1, 2, 7)


def test_setup_filter():
    f = U.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    torch.testing.assert_close(f, torch.outer(torch.tensor([1., 3., 3., 1.]),
                                              torch.tensor([1., 3., 3., 1.])) / 64)
    assert U.setup_filter([1] * 8).shape == (8,)                 # >= 8 taps stays separable
    assert U.setup_filter([1] * 8, separable=False).shape == (8, 8)
    assert U.setup_filter(None).tolist() == [[1.]]
    torch.testing.assert_close(U.setup_filter([1, 2], normalize=False, gain=4),
                               torch.tensor([[1., 2.], [2., 4.]]) * 4)
    torch.testing.assert_close(U.setup_filter([1., 2.] * 4, normalize=False, gain=4),
                               torch.tensor([1., 2.] * 4) * 2)  # gain**(1/2) per axis
    torch.testing.assert_close(U.setup_filter([[1, 2], [3, 4]], normalize=False, flip_filter=True),
                               torch.tensor([[4., 3.], [2., 1.]]))
    src = torch.tensor([1., 3.])
    U.setup_filter(src)
    assert src.tolist() == [1., 3.]  # the caller's tensor is left alone


@pytest.mark.parametrize('f', [None, FILTERS['binomial'], U.setup_filter([1, 2, 1]),
                               U.setup_filter([1] * 8)])
def test_resample_helpers_shapes_and_dc_gain(f):
    x = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    fw = 1 if f is None else f.shape[-1]
    border = fw  # pixels whose footprint touches the zero padding
    up = U.upsample2d(x, f)
    assert up.shape == (1, 2, 16, 16)
    down = U.downsample2d(x, f)
    assert down.shape == (1, 2, 4, 4)
    same = U.filter2d(x, f)
    assert same.shape == x.shape
    if f is not None:  # a unit-sum filter keeps a constant image constant away from the border
        torch.testing.assert_close(up[..., border:-border, border:-border],
                                   torch.ones_like(up[..., border:-border, border:-border]))
        torch.testing.assert_close(same[..., border:-border, border:-border],
                                   torch.ones_like(same[..., border:-border, border:-border]))
        d = 1 + fw // 4
        torch.testing.assert_close(down[..., d:-d, d:-d], torch.ones_like(down[..., d:-d, d:-d]))


def test_identity_filter_resampling():
    x = torch.randn(1, 1, 6, 6)
    torch.testing.assert_close(U.downsample2d(x, None), x[:, :, ::2, ::2])
    up = U.upsample2d(x, None)
    torch.testing.assert_close(up.sum(), 4 * x.sum())


def test_impl_cuda_on_cpu_uses_reference():
    x = torch.randn(1, 2, 5, 5)
    f = FILTERS['binomial']
    torch.testing.assert_close(U.upfirdn2d(x, f, up=2, padding=1, impl='cuda'),
                               U._upfirdn2d_ref(x, f, (2, 2), (1, 1), (1, 1, 1, 1), False, 1))
    with pytest.raises(AssertionError):
        U.upfirdn2d(x, f, impl='triton')


@pytest.mark.parametrize('name', ['2d_asym', '1d_sep'])
@pytest.mark.parametrize('up,down,padding,flip', [
    (2, 1, [2, 1, 1, 0], False), (1, 2, [1, -1, 0, 2], True), ([1, 2], [2, 1], 1, False),
])
def test_gradients(name, up, down, padding, flip):
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda x: U.upfirdn2d(x, FILTERS[name], up=up, down=down, padding=padding,
                               flip_filter=flip, gain=2)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
