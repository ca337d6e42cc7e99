"""grid_sample (bilinear, zero padding, align_corners=False) with double backward.

ADA's geometric augmentations resample the image with grid_sample, and R1 differentiates the
discriminator through them twice. NVIDIA's fallback breaks on some torch versions ("derivative
for aten::grid_sampler_2d_backward is not implemented"); here the backward is its own autograd
Function so the second pass never depends on torch providing that derivative.
"""

import torch
import torch.nn.functional as F

enabled = False  # Use the custom Functions (as NVIDIA's flag); native grid_sample otherwise.

_INTERPOLATION_BILINEAR = 0
_PADDING_ZEROS = 0


def grid_sample(input, grid):
    """Sample input [N, C, H, W] at grid [N, Ho, Wo, 2] (x, y in [-1, 1])."""
    if enabled:
        return _GridSample2dForward.apply(input, grid)
    return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


class _GridSample2dForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        assert input.ndim == 4 and grid.ndim == 4
        ctx.save_for_backward(input, grid)
        return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros',
                             align_corners=False)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        grad_input, grad_grid = _GridSample2dBackward.apply(grad_output, input, grid)
        return (grad_input if ctx.needs_input_grad[0] else None,
                grad_grid if ctx.needs_input_grad[1] else None)


class _GridSample2dBackward(torch.autograd.Function):
    """(grad_output, input, grid) -> (grad_input, grad_grid).

    grad_input is linear in grad_output and independent of input, so its derivative w.r.t.
    grad_output is grid_sample itself and its derivative w.r.t. input is zero. Derivatives of
    grad_grid (which exists only when the grid requires grad) are not provided: asking for them
    raises rather than silently returning a wrong value.
    """

    @staticmethod
    def forward(ctx, grad_output, input, grid):
        ctx.save_for_backward(grid)
        ctx.grid_needs_grad = grid.requires_grad
        ctx.set_materialize_grads(False)
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _INTERPOLATION_BILINEAR, _PADDING_ZEROS, False,
            [True, grid.requires_grad])
        if not grid.requires_grad:
            grad_grid = None
        return grad_input, grad_grid

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        grid, = ctx.saved_tensors
        if ctx.grid_needs_grad and (grad2_grad_grid is not None or grad2_grad_input is not None):
            raise ValueError('grid_sample_gradfix: second-order gradients are supported only for '
                             'a grid that does not require grad; detach the grid')
        grad2_grad_output = None
        if ctx.needs_input_grad[0] and grad2_grad_input is not None:
            grad2_grad_output = _GridSample2dForward.apply(grad2_grad_input, grid)
        return grad2_grad_output, None, None
