"""fir_matrix: one axis of upfirdn2d / reflect padding as a matrix, against the ops it stands for."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ada.ops import upfirdn2d as U
from stylegan2_ada.ops.fir_matrix import apply_separable, reflect_matrix, upfirdn_matrix

TAPS = torch.tensor([1., -2., 3., 4., 0.5])   # asymmetric, so flips and offsets show


@pytest.mark.parametrize('up,down,pad0,pad1', [
    (1, 1, 0, 0), (2, 1, 3, 2), (1, 2, 2, 1), (3, 2, -1, 4), (2, 2, 6, 5), (1, 2, -1, -1),
])
@pytest.mark.parametrize('flip_filter', [False, True])
def test_matrix_along_each_axis_equals_upfirdn2d(up, down, pad0, pad1, flip_filter):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    f = TAPS   # upfirdn2d takes float32 filters; the taps are exact in float32
    # upfirdn2d with a separable filter applies f along both axes with gain**0.5 each.
    y = U.upfirdn2d(x, f, up=up, down=down, padding=[pad0, pad1, pad0, pad1],
                    flip_filter=flip_filter, gain=4)
    A_y = upfirdn_matrix(f.double(), 7, up, down, pad0, pad1, flip_filter, gain=2)
    A_x = upfirdn_matrix(f.double(), 9, up, down, pad0, pad1, flip_filter, gain=2)
    torch.testing.assert_close(apply_separable(x, A_y, A_x), y, rtol=1e-12, atol=1e-12)


def test_matrix_by_hand():
    # Upsampling [a, b] by 2 with taps [1, 1] and one sample of left padding holds each twice.
    A = upfirdn_matrix(torch.tensor([1., 1.]), 2, up=2, pad0=1, pad1=0)
    assert A.tolist() == [[1., 0.], [1., 0.], [0., 1.], [0., 1.]]
    # Decimating by 2 with the identity filter keeps samples 0, 2, 4.
    A = upfirdn_matrix(torch.tensor([1.]), 5, down=2)
    assert A.tolist() == [[1., 0., 0., 0., 0.], [0., 0., 1., 0., 0.], [0., 0., 0., 0., 1.]]


def test_reflect_matrix_equals_reflect_padding():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    R_y = reflect_matrix(6, 5, 2, dtype=torch.float64)
    R_x = reflect_matrix(5, 0, 4, dtype=torch.float64)
    assert R_y.shape == (13, 6) and set(R_y.sum(dim=1).tolist()) == {1.0}
    torch.testing.assert_close(apply_separable(x, R_y, R_x),
                               F.pad(x, [0, 4, 5, 2], mode='reflect'), rtol=0, atol=0)


def test_impossible_sizes_are_errors():
    with pytest.raises(ValueError, match='smaller than the size'):
        reflect_matrix(4, 4, 0)
    with pytest.raises(ValueError, match='no output'):
        upfirdn_matrix(TAPS, 2, pad0=-1)


def test_gradients_to_second_order():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    A_y = upfirdn_matrix(TAPS.double(), 5, up=2, pad0=2, pad1=2)
    A_x = upfirdn_matrix(TAPS.double(), 4, down=2, pad0=2, pad1=1, flip_filter=True)
    fn = lambda x: apply_separable(x, A_y, A_x).square()
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
