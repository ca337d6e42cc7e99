"""conv2d / conv_transpose2d that can skip weight gradients during R1 and path-length passes.

The regularisers differentiate the network output w.r.t. its *input* with create_graph=True; the
weight gradients of that inner backward pass are never used, so computing them (and recording
their graph) is waste. While `no_weight_gradients()` is active and `enabled` is True, the backward
pass of these convolutions returns None for the weight. The flag is read when backward runs, not
when forward runs, exactly like NVIDIA's, so the outer backward pass still yields weight gradients.

Native conv double backward works on torch >= 1.11, so unlike NVIDIA's version there is no torch
version gate and no private cuDNN entry points: the custom path is built from public ops only.
"""

import contextlib

import torch
import torch.nn.functional as F

enabled = False                     # Use the custom path; NVIDIA's training loop sets it True.
weight_gradients_disabled = False   # Set by no_weight_gradients(); read during backward.


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Within the context, backward passes of these convolutions compute no weight gradient."""
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Drop-in for torch.nn.functional.conv2d."""
    if _use_custom(input, weight):
        return _Conv2d.apply(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation),
                             groups, False, (0, 0))
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """Drop-in for torch.nn.functional.conv_transpose2d."""
    if _use_custom(input, weight):
        return _Conv2d.apply(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation),
                             groups, True, _pair(output_padding))
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups,
                              dilation)


def _use_custom(input, weight):
    return enabled and torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad)


def _pair(v):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f'expected an int or a pair, got {v}')
    return v


class _Conv2d(torch.autograd.Function):
    """Convolution whose backward consults `weight_gradients_disabled` when it runs.

    The backward is written with differentiable aten ops, so create_graph=True yields correct
    higher-order gradients w.r.t. input, weight and the incoming gradient.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups, transposed,
                output_padding):
        ctx.save_for_backward(input, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.conf = (stride, padding, dilation, transposed, output_padding, groups)
        if transposed:
            return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups,
                                      dilation)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups = ctx.conf
        need_input = ctx.needs_input_grad[0]
        need_weight = ctx.needs_input_grad[1] and not weight_gradients_disabled
        need_bias = ctx.needs_input_grad[2]
        grad_input = grad_weight = grad_bias = None
        if need_input or need_weight:
            # Under autocast the forward ran in grad_output's dtype; differentiate in that too.
            dtype = grad_output.dtype
            grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
                grad_output, input.to(dtype), weight.to(dtype), None, list(stride), list(padding),
                list(dilation), transposed, list(output_padding), groups,
                [need_input, need_weight, False])
            grad_input = grad_input.to(input.dtype) if need_input else None
            grad_weight = grad_weight.to(weight.dtype) if need_weight else None
        if need_bias:
            grad_bias = grad_output.sum(dim=[0, 2, 3]).to(ctx.bias_dtype)
        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None
