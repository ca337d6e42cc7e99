"""fma(a, b, c) = a * b + c, with gradients reduced to each operand's broadcast shape."""

import pytest
import torch

from stylegan2_ada.ops.fma import fma

SHAPES = [
    ((2, 3), (2, 3), (2, 3)),
    ((3, 1, 4), (2, 1), (4,)),        # every operand broadcast differently
    ((1,), (5, 1, 2), (5, 3, 1)),
    ((1, 3, 1), (4, 1, 2), (3, 2)),   # leading size-1 dimension that is broadcast
]


def _operands(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize('shapes', SHAPES)
def test_values_and_gradients_match_autograd(shapes):
    a, b, c = _operands(shapes)
    y = fma(a, b, c)
    y_ref = a * b + c
    torch.testing.assert_close(y, y_ref, rtol=1e-15, atol=1e-15)
    v = torch.randn_like(y)
    grads = torch.autograd.grad((y * v).sum(), [a, b, c])
    grads_ref = torch.autograd.grad((y_ref * v).sum(), [a, b, c])
    for g, r, s in zip(grads, grads_ref, shapes):
        assert g.shape == torch.Size(s)
        torch.testing.assert_close(g, r)


def test_gradient_by_hand():
    a = torch.tensor([[1.0], [2.0]], requires_grad=True)   # broadcast over columns
    b = torch.tensor([3.0, 4.0, 5.0], requires_grad=True)  # broadcast over rows
    c = torch.tensor(1.0, requires_grad=True)              # broadcast everywhere
    fma(a, b, c).sum().backward()
    assert a.grad.tolist() == [[12.0], [12.0]]
    assert b.grad.tolist() == [3.0, 3.0, 3.0]
    assert c.grad.item() == 6.0


@pytest.mark.parametrize('shapes', SHAPES[1:])
def test_gradcheck(shapes):
    ops = _operands(shapes, seed=1)
    assert torch.autograd.gradcheck(fma, ops)
    assert torch.autograd.gradgradcheck(fma, ops)


def test_only_requested_gradients():
    a, b, c = _operands(SHAPES[1])
    b = b.detach()
    fma(a, b, c).sum().backward()
    assert a.grad is not None and c.grad is not None
