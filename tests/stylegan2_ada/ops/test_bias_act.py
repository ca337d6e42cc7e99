"""bias_act against activations written out by hand, plus first- and second-order gradients."""

import math

import pytest
import torch

from stylegan2_ada.ops import bias_act as B

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# Independent formulas (exp/log only), alpha as given.
FORMULAS = {
    'linear': lambda x, a: x,
    'relu': lambda x, a: torch.where(x > 0, x, torch.zeros_like(x)),
    'lrelu': lambda x, a: torch.where(x > 0, x, a * x),
    'tanh': lambda x, a: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1),
    'sigmoid': lambda x, a: 1 / (1 + torch.exp(-x)),
    'elu': lambda x, a: torch.where(x > 0, x, torch.exp(x) - 1),
    'selu': lambda x, a: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    'softplus': lambda x, a: torch.log(1 + torch.exp(x)),
    'swish': lambda x, a: x / (1 + torch.exp(-x)),
}
DEF_GAIN = {'relu': math.sqrt(2), 'lrelu': math.sqrt(2), 'swish': math.sqrt(2)}
ACTS = list(FORMULAS)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    x = x + 0.05 * torch.sign(x)  # keep away from the kinks at 0 for numerical differentiation
    b = 0.1 * torch.randn(3, generator=g, dtype=torch.float64)
    return x, b


def test_activation_table():
    assert list(B.activation_funcs) == ACTS
    assert [s.cuda_idx for s in B.activation_funcs.values()] == list(range(1, 10))
    for name, spec in B.activation_funcs.items():
        assert spec.def_gain == pytest.approx(DEF_GAIN.get(name, 1))
        assert spec.def_alpha == (0.2 if name == 'lrelu' else 0)
        assert spec.has_2nd_grad == (name not in ('linear', 'relu', 'lrelu'))
        assert spec.ref in ('', 'x', 'y') and spec['cuda_idx'] == spec.cuda_idx


def test_lrelu_by_hand():
    x = torch.tensor([[-1.0, 2.0], [3.0, -0.5]])
    b = torch.tensor([0.5, 0.0])
    s = math.sqrt(2)
    y = B.bias_act(x, b, act='lrelu')
    expected = torch.tensor([[-0.5 * 0.2 * s, 2 * s], [3.5 * s, -0.5 * 0.2 * s]])
    torch.testing.assert_close(y, expected)
    y = B.bias_act(x, b, act='lrelu', clamp=1)
    torch.testing.assert_close(y, torch.tensor([[-0.1 * s, 1.0], [1.0, -0.1 * s]]))
    y = B.bias_act(x, None, act='lrelu', alpha=0.5, gain=1)
    torch.testing.assert_close(y, torch.tensor([[-0.5, 2.0], [3.0, -0.25]]))


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('alpha,gain,clamp', [(None, None, None), (0.3, 0.7, 0.8)])
def test_matches_formula(act, alpha, gain, clamp):
    x, b = _inputs()
    y = B.bias_act(x, b, dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp)
    a = 0.2 if alpha is None and act == 'lrelu' else (alpha or 0)
    ref = FORMULAS[act](x + b[None, :, None], a) * (gain or DEF_GAIN.get(act, 1))
    if clamp is not None:
        ref = torch.where(ref > clamp, clamp, torch.where(ref < -clamp, -clamp, ref))
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dim', [0, 1, 2])
def test_bias_broadcasts_along_dim(dim):
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    b = torch.arange(x.shape[dim], dtype=torch.float64)
    y = B.bias_act(x, b, dim=dim)
    shape = [1, 1, 1]
    shape[dim] = -1
    torch.testing.assert_close(y, x + b.view(shape))


def test_negative_clamp_means_none_and_impl_cuda_on_cpu_is_reference():
    x, b = _inputs(1)
    x = 10 * x
    torch.testing.assert_close(B.bias_act(x, b, act='lrelu', clamp=-1),
                               B.bias_act(x, b, act='lrelu'))
    torch.testing.assert_close(B.bias_act(x, b, act='tanh', clamp=0.5, impl='cuda'),
                               B._bias_act_ref(x, b, 1, 'tanh', None, None, 0.5))
    with pytest.raises(AssertionError):
        B.bias_act(x, b, impl='triton')
    with pytest.raises(KeyError):
        B.bias_act(x, b, act='gelu')


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('with_bias,clamp', [(True, None), (False, None), (True, 1.0)])
def test_gradients(act, with_bias, clamp):
    x, b = _inputs(2)
    x.requires_grad_(True)
    b.requires_grad_(True)
    inputs = (x, b) if with_bias else (x,)
    fn = lambda x, b=None: B.bias_act(x, b, act=act, clamp=clamp)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize('act', ['linear', 'relu', 'lrelu'])
@pytest.mark.parametrize('with_bias', [True, False])
@pytest.mark.parametrize('alpha,gain', [(None, None), (None, 1), (-0.1, 2.0), (0.0, 0.5),
                                        (0.3, -0.5)])
def test_fast_path_leaves_inputs_alone_and_keeps_gradients(act, with_bias, alpha, gain):
    # The homogeneous activations run in place on the fresh x + b; the caller's x and b, negative
    # gains (act(g z) != g act(z)) and non-positive slopes must not be affected by that.
    x, b = _inputs(3)
    x.requires_grad_(True)
    b.requires_grad_(True)
    x_before, b_before = x.detach().clone(), b.detach().clone()
    bias = b if with_bias else None
    y = B.bias_act(x, bias, act=act, alpha=alpha, gain=gain, clamp=0.9)
    assert torch.equal(x.detach(), x_before) and torch.equal(b.detach(), b_before)
    a = alpha if alpha is not None else (0.2 if act == 'lrelu' else 0)
    z = x + b[None, :, None] if with_bias else x
    ref = (FORMULAS[act](z, a) * (gain if gain is not None else DEF_GAIN.get(act, 1)))
    torch.testing.assert_close(y, ref.clamp(-0.9, 0.9), rtol=1e-12, atol=1e-12)
    inputs = (x, b) if with_bias else (x,)
    fn = lambda x, b=None: B.bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=0.9)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
