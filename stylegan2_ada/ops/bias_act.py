"""Fused bias + activation + gain + clamp, the nonlinearity after every StyleGAN2 layer.

Fusing matters only for the CUDA kernel (one memory pass instead of four); the reference here is
plain autograd, so first- and second-order gradients (needed by R1 and path-length
regularisation) come for free.
"""

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One activation as NVIDIA describes it.

    func: the function f(x, alpha). def_alpha / def_gain: defaults when the caller passes None.
    cuda_idx: the kernel's activation number. ref: which tensors the kernel's backward needs, 'x'
    (input) or 'y' (output). has_2nd_grad: whether the second derivative is nonzero.
    """
    func: Callable
    def_alpha: float
    def_gain: float
    cuda_idx: int
    ref: str
    has_2nd_grad: bool

    def __getitem__(self, key):  # NVIDIA's records are EasyDicts; allow spec['def_gain'] too.
        return getattr(self, key)


def _linear(x, **_):
    return x


def _lrelu(x, alpha, **_):
    return F.leaky_relu(x, alpha)


def _swish(x, **_):
    return torch.sigmoid(x) * x


def _unary(fn):
    """Wrap a one-argument activation to the func(x, alpha) calling convention."""
    return lambda x, **_: fn(x)


_SQRT2 = math.sqrt(2)
_HOMOGENEOUS = ('linear', 'relu', 'lrelu')   # act(g * z) = g * act(z) for g > 0
activation_funcs = {  # name: (func, def_alpha, def_gain, cuda_idx, ref, has_2nd_grad)
    'linear':   ActivationSpec(_linear,                0,   1,      1, '',  False),
    'relu':     ActivationSpec(_unary(F.relu),         0,   _SQRT2, 2, 'y', False),
    'lrelu':    ActivationSpec(_lrelu,                 0.2, _SQRT2, 3, 'y', False),
    'tanh':     ActivationSpec(_unary(torch.tanh),     0,   1,      4, 'y', True),
    'sigmoid':  ActivationSpec(_unary(torch.sigmoid),  0,   1,      5, 'y', True),
    'elu':      ActivationSpec(_unary(F.elu),          0,   1,      6, 'y', True),
    'selu':     ActivationSpec(_unary(F.selu),         0,   1,      7, 'y', True),
    'softplus': ActivationSpec(_unary(F.softplus),     0,   1,      8, 'y', True),
    'swish':    ActivationSpec(_swish,                 0,   _SQRT2, 9, 'x', True),
}


def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
    """Return clamp(act(x + b, alpha) * gain) with b broadcast along `dim`.

    alpha / gain default to the activation's own (lrelu: 0.2 and sqrt 2); clamp None or < 0 means
    no clamping, otherwise the result is clipped to [-clamp, clamp].
    """
    assert isinstance(x, torch.Tensor)
    assert impl in ('ref', 'cuda')
    if impl == 'cuda' and x.device.type == 'cuda':
        from . import _cuda_bias_act
        op = _cuda_bias_act.op(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        if op is not None:
            return op.apply(x, b)
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    """Reference bias_act from standard ops; differentiable to any order.

    For the positively homogeneous activations (linear, relu, lrelu) act(z) * gain equals
    act(z * gain) when gain > 0, so the gain and the activation are applied in place on the
    fresh x + b (two new tensors per call instead of four; autograd saves nothing that is
    overwritten: add and scaling save no tensors, the in-place activation saves its result).
    """
    assert isinstance(x, torch.Tensor)
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)

    fresh = False   # whether x is a tensor made here, which may be overwritten
    if b is not None:
        assert isinstance(b, torch.Tensor) and b.ndim == 1
        assert 0 <= dim < x.ndim and b.shape[0] == x.shape[dim]
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        fresh = True
    if act in _HOMOGENEOUS and gain > 0:
        if gain != 1:
            x = x.mul_(gain) if fresh else x * gain
            fresh = True
        if act == 'lrelu':
            # In place only for a positive slope, where the result still tells the sign.
            x = F.leaky_relu(x, alpha, inplace=fresh and alpha > 0)
        elif act == 'relu':
            x = F.relu(x, inplace=fresh)
    else:
        x = spec.func(x, alpha=alpha)
        if gain != 1:
            x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
