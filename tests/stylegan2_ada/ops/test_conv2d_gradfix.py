"""conv2d_gradfix: same values and gradients as native convs, and no_weight_gradients semantics."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ada.ops import conv2d_gradfix as G


@pytest.fixture
def custom_path(monkeypatch):
    monkeypatch.setattr(G, 'enabled', True)


def _inputs(transpose=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w_shape = (2, 3, 3, 3) if transpose else (3, 2, 3, 3)
    w = torch.randn(*w_shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, b


CONVS = {
    'conv2d': (lambda x, w, b: G.conv2d(x, w, b, stride=(2, 1), padding=1),
               lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1), False),
    'conv_transpose2d': (lambda x, w, b: G.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            output_padding=1),
                         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            output_padding=1), True),
}


@pytest.mark.parametrize('name', list(CONVS))
@pytest.mark.parametrize('enabled', [False, True])
def test_matches_native_to_second_order(name, enabled, monkeypatch):
    monkeypatch.setattr(G, 'enabled', enabled)
    ours, native, transpose = CONVS[name]
    x, w, b = _inputs(transpose)
    y, y_ref = ours(x, w, b), native(x, w, b)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    v = torch.randn_like(y)
    g = torch.autograd.grad((y * v).sum(), [x, w, b], create_graph=True)
    g_ref = torch.autograd.grad((y_ref * v).sum(), [x, w, b], create_graph=True)
    for a, r in zip(g, g_ref):
        torch.testing.assert_close(a, r)
    # Second order: the input gradient depends on the weight, the weight gradient on the input.
    gg = torch.autograd.grad((g[0] ** 2).sum() + (g[1] ** 2).sum(), [x, w])
    gg_ref = torch.autograd.grad((g_ref[0] ** 2).sum() + (g_ref[1] ** 2).sum(), [x, w])
    for a, r in zip(gg, gg_ref):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize('name', list(CONVS))
def test_gradcheck_custom_path(name, custom_path):
    ours, _, transpose = CONVS[name]
    x, w, b = _inputs(transpose)
    x = x[:1, :, :3, :3].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(ours, (x, w, b))
    assert torch.autograd.gradgradcheck(ours, (x, w, b))


def test_no_weight_gradients_skips_weight_only(custom_path):
    x, w, b = _inputs()
    y = G.conv2d(x, w, b, padding=1)
    with G.no_weight_gradients():
        y.sum().backward()
    assert w.grad is None
    x_ref = x.detach().requires_grad_(True)
    F.conv2d(x_ref, w.detach(), b.detach(), padding=1).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(b.grad, torch.full_like(b, y[0, 0].numel() * 2))

    # The flag is read when backward runs: outside the context weights get gradients again.
    G.conv2d(x, w, b, padding=1).sum().backward()
    assert w.grad is not None


def test_r1_pattern_still_trains_weights(custom_path):
    """Forward outside, input gradient inside the context, penalty backward outside (as NVIDIA's
    R1): the weight gradient of the penalty must equal the native one."""
    x, w, _ = _inputs()
    y = torch.tanh(G.conv2d(x, w, padding=1))
    with G.no_weight_gradients():
        gx, = torch.autograd.grad(y.sum(), [x], create_graph=True)
    (gx ** 2).sum().backward()

    x_ref, w_ref = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    y_ref = torch.tanh(F.conv2d(x_ref, w_ref, padding=1))
    gx_ref, = torch.autograd.grad(y_ref.sum(), [x_ref], create_graph=True)
    (gx_ref ** 2).sum().backward()
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(w.grad, w_ref.grad)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_context_restores_flag():
    assert not G.weight_gradients_disabled
    with G.no_weight_gradients():
        assert G.weight_gradients_disabled
        with G.no_weight_gradients(disable=False):
            assert G.weight_gradients_disabled  # disable=False leaves the state alone
    assert not G.weight_gradients_disabled
    with pytest.raises(RuntimeError):
        with G.no_weight_gradients():
            raise RuntimeError('boom')
    assert not G.weight_gradients_disabled
