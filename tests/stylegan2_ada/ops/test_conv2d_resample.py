"""conv2d_resample's fast paths against the plain composition they stand for, plus golden values.

The reference does what conv2d_resample means, one step at a time: zero-insert and pad the
input, low-pass it, convolve without padding, then low-pass and decimate. The golden checksums
were produced by NVIDIA's stylegan2-ada-pytorch conv2d_resample on the same inputs.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ada.ops import upfirdn2d as U
from stylegan2_ada.ops.conv2d_resample import conv2d_resample


def _reference(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    fw, fh = U._get_filter_size(f)
    px0, px1, py0, py1 = U._parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = U.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1],
                    gain=up ** 2, flip_filter=flip_filter)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = U.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


FILTER = U.setup_filter([1, 3, 3, 1])
ODD_FILTER = U.setup_filter([1, 2, 1])  # odd length exercises the other rounding of the padding
CASES = list(itertools.product(
    [1, 3],                        # kernel size
    [(2, 1), (1, 2), (1, 1), (2, 2)],  # up, down
    [1, [1, 0, 2, 1]],             # padding
    [1, 2],                        # groups
))


@pytest.mark.parametrize('k,updown,padding,groups', CASES)
def test_fast_paths_match_reference(k, updown, padding, groups):
    up, down = updown
    g = torch.Generator().manual_seed(k * 10 + up + 3 * down)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, generator=g, dtype=torch.float64)
    for flip_weight, flip_filter, f in [(True, False, FILTER), (False, True, ODD_FILTER),
                                        (True, False, U.setup_filter([1, 2, 3, 4, 5, 6, 7, 8]))]:
        y = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                            flip_weight=flip_weight, flip_filter=flip_filter)
        ref = _reference(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        assert y.shape == ref.shape
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_flip_weight_is_convolution_vs_correlation():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))
    torch.testing.assert_close(conv2d_resample(x, w, padding=1, flip_weight=False),
                               F.conv2d(x, w.flip([2, 3]), padding=1))


def _golden_inputs(k, cin=3, cout=4, h=6, w=5):
    x = torch.sin(torch.arange(2 * cin * h * w, dtype=torch.float64) * 0.37).reshape(2, cin, h, w)
    wt = torch.cos(torch.arange(cout * cin * k * k, dtype=torch.float64) * 0.91)
    return x, wt.reshape(cout, cin, k, k)


@pytest.mark.parametrize('f,k,up,down,padding,flip_weight,shape,checksum', [
    (FILTER, 3, 2, 1, 1, True, (2, 4, 12, 10), -112.41109384335687),
    (FILTER, 3, 1, 2, 1, True, (2, 4, 3, 2), -1.6239020305941287),
    (FILTER, 1, 2, 1, 0, True, (2, 4, 12, 10), -19.958267536310938),
    (FILTER, 1, 1, 2, 0, True, (2, 4, 3, 2), -1.0082770529190206),
    (FILTER, 3, 2, 1, 1, False, (2, 4, 12, 10), -82.6580515104992),
    (FILTER, 3, 1, 1, [1, 0, 2, 1], True, (2, 4, 7, 4), -19.193693406024632),
    (ODD_FILTER, 3, 2, 1, 1, True, (2, 4, 12, 10), -116.21529377223),
    (ODD_FILTER, 3, 1, 2, 1, True, (2, 4, 3, 2), -1.9444623363818758),
    (ODD_FILTER, 1, 1, 2, 0, True, (2, 4, 3, 2), -1.0751104594221514),
    (ODD_FILTER, 3, 2, 2, 1, True, (2, 4, 6, 5), -25.201924704084327),
], ids=lambda v: '' if isinstance(v, torch.Tensor) else None)
def test_nvidia_golden(f, k, up, down, padding, flip_weight, shape, checksum):
    x, w = _golden_inputs(k)
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, flip_weight=flip_weight)
    assert tuple(y.shape) == shape
    weights = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
    assert (y * weights).sum().item() == pytest.approx(checksum, rel=1e-12)


@pytest.mark.parametrize('k,up,down', [(3, 2, 1), (3, 1, 2), (1, 2, 1), (1, 1, 2)])
def test_gradients(k, up, down):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, k, k, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_resample(x, w, f=FILTER, up=up, down=down, padding=k // 2)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


def test_rejects_bad_arguments():
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(AssertionError):
        conv2d_resample(x, w.double())
    with pytest.raises(AssertionError):
        conv2d_resample(x, w, up=0)
    with pytest.raises(AssertionError):
        conv2d_resample(x, w, f=FILTER.double(), up=2)
