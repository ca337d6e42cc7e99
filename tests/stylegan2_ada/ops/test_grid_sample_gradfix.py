"""grid_sample_gradfix: native values, correct first and second derivatives, clear refusal."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ada.ops import grid_sample_gradfix as GS


@pytest.fixture(params=[False, True], ids=['native', 'custom'])
def enabled(request, monkeypatch):
    monkeypatch.setattr(GS, 'enabled', request.param)
    return request.param


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 3, 3, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2  # some outside
    return x, grid


def test_identity_grid_reproduces_input(enabled):
    x, _ = _inputs()
    theta = torch.tensor([[1., 0, 0], [0, 1, 0]], dtype=torch.float64).expand(2, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    torch.testing.assert_close(GS.grid_sample(x, grid), x)


def test_bilinear_by_hand(enabled):
    # Sampling halfway between the two pixel centres of a 1x2 image averages them.
    x = torch.tensor([[[[2.0, 4.0]]]])
    grid = torch.tensor([[[[0.0, 0.0], [-0.5, 0.0], [1.0, 0.0]]]])
    assert GS.grid_sample(x, grid).tolist() == [[[[3.0, 2.0, 2.0]]]]  # the edge half-blends with 0


def test_matches_native_first_and_second_order(enabled):
    x, grid = _inputs()
    y = GS.grid_sample(x, grid)
    y_ref = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    v = torch.randn_like(y)
    gx, = torch.autograd.grad((torch.sin(y) * v).sum(), [x], create_graph=True)
    gx_ref, = torch.autograd.grad((torch.sin(y_ref) * v).sum(), [x], create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    ggx, = torch.autograd.grad((gx ** 2).sum(), [x])
    ggx_ref, = torch.autograd.grad((gx_ref ** 2).sum(), [x])
    torch.testing.assert_close(ggx, ggx_ref)


def test_gradcheck_and_gradgradcheck(enabled):
    x, grid = _inputs()
    x = x[:1, :1].detach().requires_grad_(True)
    grid = grid[:1]
    assert torch.autograd.gradgradcheck(GS.grid_sample, (x, grid))
    grid.requires_grad_(True)
    assert torch.autograd.gradcheck(GS.grid_sample, (x, grid))


def test_second_order_through_grid_is_refused(monkeypatch):
    monkeypatch.setattr(GS, 'enabled', True)
    x, grid = _inputs()
    grid.requires_grad_(True)
    gx, = torch.autograd.grad(GS.grid_sample(x, grid).sum(), [x], create_graph=True)
    with pytest.raises(ValueError, match='detach the grid'):
        (gx ** 2).sum().backward()
