"""Fused multiply-add a * b + c (one addcmul kernel), used by the modulated-conv fused path."""

import torch


def fma(a, b, c):
    """a * b + c with broadcasting; gradients are reduced back to each operand's shape."""
    return _FusedMultiplyAdd.apply(a, b, c)


class _FusedMultiplyAdd(torch.autograd.Function):
    """addcmul with a backward written in differentiable ops, so higher orders work too."""

    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = db = dc = None
        if ctx.needs_input_grad[0]:
            da = _unbroadcast(dout * b, a.shape)
        if ctx.needs_input_grad[1]:
            db = _unbroadcast(dout * a, b.shape)
        if ctx.needs_input_grad[2]:
            dc = _unbroadcast(dout, ctx.c_shape)
        return da, db, dc


def _unbroadcast(x, shape):
    """Sum x over the dimensions along which a tensor of `shape` was broadcast to x's shape."""
    extra = x.ndim - len(shape)
    assert extra >= 0
    dims = [i for i in range(x.ndim) if i < extra or (shape[i - extra] == 1 and x.shape[i] != 1)]
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    x = x.reshape(shape)
    return x
