"""modulated_conv2d: the training path (activations scaled, demodulation coefficients from a
small matmul) and the fused path (per-sample weights, grouped conv) are the same function."""

import pytest
import torch

from stylegan2_ada.layers import modulated_conv2d
from stylegan2_ada.networks import Generator
from stylegan2_ada.ops import upfirdn2d


def _inputs(up):
    g = torch.Generator().manual_seed(up)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64) + 1
    noise = torch.randn(3, 1, 6 * up, 6 * up, generator=g, dtype=torch.float64)
    return x, weight, styles, noise


@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('demodulate,with_noise', [(True, True), (True, False), (False, True)])
def test_training_path_equals_fused_path_with_gradients(up, demodulate, with_noise):
    x, weight, styles, noise = _inputs(up)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    results = []
    for fused in (False, True):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        y = modulated_conv2d(*leaves, noise=noise if with_noise else None, up=up, padding=1,
                             resample_filter=f, demodulate=demodulate, fused_modconv=fused)
        grads = torch.autograd.grad((y * torch.cos(y)).sum(), leaves)
        results.append((y, grads))
    (y_train, g_train), (y_fused, g_fused) = results
    torch.testing.assert_close(y_train, y_fused, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_train, g_fused):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_demodulation_by_hand():
    # One output channel, weights [1, 2] on two 1x1 inputs, styles [3, 4]: the modulated weights
    # are [3, 8], so demodulation divides by sqrt(9 + 64).
    x = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    weight = torch.tensor([1., 2.], dtype=torch.float64).reshape(1, 2, 1, 1)
    styles = torch.tensor([[3., 4.]], dtype=torch.float64)
    y = modulated_conv2d(x, weight, styles, fused_modconv=False)
    torch.testing.assert_close(y.flatten(), torch.tensor([11 / 73 ** 0.5], dtype=torch.float64))


def test_generator_train_mode_renders_what_eval_mode_renders():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    ws = torch.randn(2, G.num_ws, 8)
    with torch.no_grad():
        fused = G.eval().synthesis(ws, noise_mode='const')
        unfused = G.train().synthesis(ws, noise_mode='const')
    torch.testing.assert_close(unfused, fused, rtol=1e-5, atol=1e-5)
