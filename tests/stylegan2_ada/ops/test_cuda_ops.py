"""The compiled bias_act and upfirdn2d against the reference ops: values, first- and second-order
gradients, layouts and fallbacks.

Device 'cuda' runs the kernels on a GPU (skipped without one). Device 'host' (marked cuda_build:
it needs nvcc and a CUDA build of torch, not a GPU) runs the same checks through the extensions'
host path, which executes the kernels' own element and tile code on the CPU. The pure-Python
parts of the CUDA ops (adjoint configuration, separable split) are checked in the default run.
"""

import random

import pytest
import torch

from stylegan2_ada.ops import _cuda_bias_act, _cuda_upfirdn2d, custom_ops
from stylegan2_ada.ops.bias_act import _bias_act_ref, activation_funcs, bias_act
from stylegan2_ada.ops.upfirdn2d import _upfirdn2d_ref, setup_filter, upsample2d

ACTS = list(activation_funcs)


def _build_or_skip(name, sources):
    problem = custom_ops.toolchain_problem(cuda=True)
    if problem:
        pytest.skip(problem)
    return custom_ops.build(name, [custom_ops.SOURCE_DIR / s for s in sources])


@pytest.fixture(scope='module', params=['cuda', pytest.param('host', marks=pytest.mark.cuda_build)])
def device(request):
    if request.param == 'cuda':
        if not torch.cuda.is_available():
            pytest.skip('no CUDA device')
        return torch.device('cuda')
    return torch.device('cpu')


@pytest.fixture(scope='module')
def bias_act_ext(device):
    return _build_or_skip('bias_act', _cuda_bias_act.SOURCES)


@pytest.fixture(scope='module')
def upfirdn2d_ext(device):
    return _build_or_skip('upfirdn2d', _cuda_upfirdn2d.SOURCES)


def _check(actual, expected, what):
    problem = custom_ops.mismatch(actual, expected, what)
    assert problem is None, problem


def _zeros_for_none(grads, like):
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


# ----------------------------------------------------------------------------------- bias_act

def _bias_act_inputs(cfg, shape, dtype, device, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * 2
    b = torch.randn([shape[cfg.dim]], generator=gen)
    dy = torch.randn(shape, generator=gen)
    w = torch.randn(shape, generator=gen)
    x = _cuda_bias_act.away_from_clamp(x, b, cfg)
    return [t.to(device, dtype) for t in (x, b, dy, w)]


def _bias_act_grads(run, x, b, dy, w, second_order):
    """Output, first-order grads of x and b, and (optionally) the grads of <dx, w> with respect to
    x, b and dy, which exercise every path of the double backward."""
    x, b, dy = (t.detach().requires_grad_(True) for t in (x, b, dy))
    y = run(x, b)
    dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=second_order)
    out = [y, dx, db]
    if second_order:
        out += _zeros_for_none(torch.autograd.grad((dx * w).sum(), [x, b, dy], allow_unused=True),
                               [x, b, dy])
    return out


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('clamp', [None, 0.5])
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_matches_reference(bias_act_ext, device, act, clamp, dtype):
    cfg = _cuda_bias_act.op_config(1, act, clamp=clamp)
    x, b, dy, w = _bias_act_inputs(cfg, (3, 6, 4, 5), dtype, device, seed=ACTS.index(act))
    second = dtype in (torch.float32, torch.float64)
    ours = _bias_act_grads(_cuda_bias_act.BiasActOp(bias_act_ext, cfg).apply, x, b, dy, w, second)
    ref = _bias_act_grads(lambda x, b: _bias_act_ref(x, b, *cfg),
                          *(t.double() for t in (x, b, dy, w)), second)
    names = ['output', 'x gradient', 'b gradient',
             'x 2nd gradient', 'b 2nd gradient', 'dy 2nd gradient']
    for actual, expected, name in zip(ours, ref, names):
        _check(actual, expected, name)


@pytest.mark.parametrize('clamp', [None, 1.0])
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_gradcheck(bias_act_ext, device, act, clamp):
    cfg = _cuda_bias_act.op_config(1, act, clamp=clamp)
    x, b, _, _ = _bias_act_inputs(cfg, (2, 3, 4), torch.float64, device, seed=7)
    op = _cuda_bias_act.BiasActOp(bias_act_ext, cfg)
    inputs = (x.requires_grad_(True), b.requires_grad_(True))
    assert torch.autograd.gradcheck(op.apply, inputs)
    assert torch.autograd.gradgradcheck(op.apply, inputs)


@pytest.mark.parametrize('layout', ['channels_last', 'transposed', 'dim0', 'dim3', 'fc', 'no_bias'])
def test_bias_act_layouts(bias_act_ext, device, layout):
    dim = {'dim0': 0, 'dim3': 3}.get(layout, 1)
    cfg = _cuda_bias_act.op_config(dim, 'lrelu', clamp=2.0)
    shape = (8, 6) if layout == 'fc' else (3, 6, 4, 5)
    x, b, _, _ = _bias_act_inputs(cfg, shape, torch.float32, device, seed=3)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == 'transposed':  # not dense in any standard format
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == 'no_bias':
        b = None
    x = x.requires_grad_(True)
    y = _cuda_bias_act.BiasActOp(bias_act_ext, cfg).apply(x, b)
    y.sum().backward()  # an expanded (stride 0) incoming gradient
    x64 = x.detach().double().requires_grad_(True)
    y64 = _bias_act_ref(x64, None if b is None else b.double(), *cfg)
    y64.sum().backward()
    _check(y, y64, 'output')
    _check(x.grad, x64.grad, 'x gradient')
    if layout == 'channels_last':
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_bias_act_falls_back_for_unsupported_inputs(bias_act_ext, device):
    cfg = _cuda_bias_act.op_config(1, 'lrelu')
    op = _cuda_bias_act.BiasActOp(bias_act_ext, cfg)
    x = torch.randn([2, 3, 4], device=device, dtype=torch.float16)
    b = torch.randn([3], device=device)  # float32 bias on a half input promotes, as in the reference
    y = op.apply(x, b)
    assert y.dtype == torch.float32
    _check(y, _bias_act_ref(x.double(), b.double(), *cfg), 'output')
    assert _cuda_bias_act.op(act='lrelu', alpha=-0.5) is None


# ---------------------------------------------------------------------------------- upfirdn2d

def _random_config(rng):
    """A random valid upfirdn2d case: (input shape, filter, Config)."""
    while True:
        fh, fw = rng.randint(1, 6), rng.randint(1, 6)
        separable = rng.random() < 0.3
        if separable:
            fh = fw
        cfg = _cuda_upfirdn2d.Config(
            rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 3),
            rng.randint(-2, 4), rng.randint(-2, 4), rng.randint(-2, 4), rng.randint(-2, 4),
            rng.random() < 0.5, rng.choice([1.0, 0.5, 3.0]))
        shape = (2, 3, rng.randint(1, 9), rng.randint(1, 9))
        if (shape[3] * cfg.up_x + cfg.pad_x0 + cfg.pad_x1 >= fw
                and shape[2] * cfg.up_y + cfg.pad_y0 + cfg.pad_y1 >= fh):
            gen = torch.Generator().manual_seed(rng.randint(0, 2**31))
            f = torch.randn([fw] if separable else [fh, fw], generator=gen)
            return shape, f, cfg


def _upfirdn2d_grads(run, x, dy):
    x = x.detach().requires_grad_(True)
    y = run(x)
    dx, = torch.autograd.grad(y, [x], dy)
    return y, dx


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize('seed', range(12))
def test_upfirdn2d_matches_reference(upfirdn2d_ext, device, seed, dtype):
    shape, f, cfg = _random_config(random.Random(seed))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(device, dtype)
    f = f.to(device)
    op = _cuda_upfirdn2d.UpFirDn2dOp(upfirdn2d_ext, cfg)
    y = op.apply(x, f)
    dy = torch.randn(y.shape, generator=gen).to(device, dtype)
    ours = _upfirdn2d_grads(lambda x: op.apply(x, f), x, dy)
    ref = _upfirdn2d_grads(lambda x: _upfirdn2d_ref(x, f, *cfg.reference_args()),
                           x.double(), dy.double())
    _check(ours[0], ref[0], f'output {cfg}')
    _check(ours[1], ref[1], f'x gradient {cfg}')


@pytest.mark.parametrize('seed', range(4))
def test_upfirdn2d_gradcheck(upfirdn2d_ext, device, seed):
    shape, f, cfg = _random_config(random.Random(100 + seed))
    x = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    op = _cuda_upfirdn2d.UpFirDn2dOp(upfirdn2d_ext, cfg)
    run = lambda x: op.apply(x, f.to(device))  # noqa: E731
    assert torch.autograd.gradcheck(run, (x,))
    assert torch.autograd.gradgradcheck(run, (x,))


@pytest.mark.parametrize('case', ['channels_last', 'identity_filter', 'many_tiles', 'shrunk_tile',
                                  'largest_filter', 'crop'])
def test_upfirdn2d_shapes_and_layouts(upfirdn2d_ext, device, case):
    gen = torch.Generator().manual_seed(1)
    shape, f, cfg = (2, 3, 9, 11), torch.rand([4, 4], generator=gen), _cuda_upfirdn2d.Config(
        2, 2, 1, 1, 2, 1, 2, 1, False, 4.0)
    if case == 'identity_filter':
        f = None
    if case == 'many_tiles':  # several tiles per plane, the last ones partial
        shape = (1, 2, 40, 37)
    if case == 'shrunk_tile':  # a 32x32 tile would read a 156x156 window: too big for shared memory
        shape, f = (1, 2, 150, 150), torch.rand([31, 31], generator=gen)
        cfg = _cuda_upfirdn2d.Config(1, 1, 4, 4, 4, 4, 4, 4, True, 1.0)
    if case == 'largest_filter':
        shape, f = (1, 2, 12, 12), torch.rand([32], generator=gen)
        cfg = _cuda_upfirdn2d.Config(1, 1, 1, 1, 16, 15, 16, 15, False, 1.0)
    if case == 'crop':
        cfg = _cuda_upfirdn2d.Config(1, 1, 2, 2, -3, -2, -1, -4, False, 1.0)
    x = torch.randn(shape, generator=gen).to(device)
    if case == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    f = None if f is None else f.to(device)
    x.requires_grad_(True)
    y = _cuda_upfirdn2d.UpFirDn2dOp(upfirdn2d_ext, cfg).apply(x, f)
    y.sum().backward()  # an expanded (stride 0) incoming gradient
    x64 = x.detach().double().requires_grad_(True)
    y64 = _upfirdn2d_ref(x64, f, *cfg.reference_args())
    y64.sum().backward()
    _check(y, y64, 'output')
    _check(x.grad, x64.grad, 'x gradient')
    if case == 'channels_last':
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_upfirdn2d_falls_back_for_unsupported_filters(upfirdn2d_ext, device):
    cfg = _cuda_upfirdn2d.Config(1, 1, 1, 1, 20, 20, 0, 0, False, 1.0)
    op = _cuda_upfirdn2d.UpFirDn2dOp(upfirdn2d_ext, cfg)
    x = torch.randn([1, 2, 5, 6], device=device)
    f = torch.rand([1, 40], device=device)  # wider than the kernel takes
    _check(op.apply(x, f), _upfirdn2d_ref(x.double(), f, *cfg.reference_args()), 'output')


# ------------------------------------------------------------------------------ validation

class _Skewed:
    """An extension whose results are 1% off: validation must notice."""

    def __init__(self, ext):
        self.ext = ext

    def __getattr__(self, name):
        return lambda *args: getattr(self.ext, name)(*args) * 1.01


@pytest.mark.parametrize('module', [_cuda_bias_act, _cuda_upfirdn2d])
def test_validation_accepts_the_kernel_and_rejects_a_wrong_one(bias_act_ext, upfirdn2d_ext, device,
                                                               module):
    ext = bias_act_ext if module is _cuda_bias_act else upfirdn2d_ext
    with torch.inference_mode():  # the first op call may come from anywhere
        assert module._validate(ext, device) is None
    problem = module._validate(_Skewed(ext), device)
    assert problem is not None and 'max error' in problem


# ------------------------------------------------------------------- public API, GPU only

def test_public_ops_run_on_the_kernels(device):
    if device.type != 'cuda':
        pytest.skip('the public ops route only CUDA tensors to the kernels')
    assert _cuda_bias_act.op(act='lrelu') is not None, 'bias_act plugin did not build or validate'
    assert _cuda_upfirdn2d.op((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0) is not None
    x = torch.randn([4, 8, 16, 16], device=device, dtype=torch.float16)
    b = torch.randn([8], device=device, dtype=torch.float16)
    _check(bias_act(x, b, act='lrelu', clamp=256), bias_act(x.double(), b.double(), act='lrelu',
                                                              clamp=256, impl='ref'), 'bias_act')
    f = setup_filter([1, 3, 3, 1], device=device)
    _check(upsample2d(x, f), upsample2d(x.double(), f, impl='ref'), 'upsample2d')


# -------------------------------------------------------------- pure Python, default run (CPU)

@pytest.mark.parametrize('seed', range(20))
def test_transposed_config_is_the_adjoint(seed):
    """The backward configuration reproduces autograd's input gradient of the reference."""
    shape, f, cfg = _random_config(random.Random(seed))
    for filt, pass_cfg in _cuda_upfirdn2d.separable_passes(f, cfg):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        y = _upfirdn2d_ref(x, filt, *pass_cfg.reference_args())
        dy = torch.randn(y.shape, dtype=torch.float64)
        expected, = torch.autograd.grad(y, [x], dy)
        back = pass_cfg.transposed(*shape[2:], *y.shape[2:], *filt.shape)
        actual = _upfirdn2d_ref(dy, filt, *back.reference_args())
        torch.testing.assert_close(actual, expected)
        shape = tuple(y.shape)


@pytest.mark.parametrize('seed', range(10))
def test_separable_passes_equal_the_reference(seed):
    shape, _, cfg = _random_config(random.Random(seed))
    f = torch.rand([5]) + 0.1
    if min(shape[3] * cfg.up_x + cfg.pad_x0 + cfg.pad_x1,
           shape[2] * cfg.up_y + cfg.pad_y0 + cfg.pad_y1) < 5:
        shape = (2, 3, 9, 9)
    x = torch.randn(shape, dtype=torch.float64)
    y = x
    for filt, pass_cfg in _cuda_upfirdn2d.separable_passes(f, cfg):
        y = _upfirdn2d_ref(y, filt, *pass_cfg.reference_args())
    torch.testing.assert_close(y, _upfirdn2d_ref(x, f, *cfg.reference_args()))


def test_ops_are_unavailable_on_a_cpu_only_torch(monkeypatch, recwarn):
    if torch.version.cuda is not None:
        pytest.skip('this torch has CUDA')
    monkeypatch.delenv(custom_ops.ENV_REFERENCE, raising=False)
    monkeypatch.setattr(custom_ops, '_plugins', {})
    assert _cuda_bias_act.op(act='lrelu') is None
    assert _cuda_upfirdn2d.op((2, 2), (1, 1), (0, 0, 0, 0), False, 1.0) is None
    messages = [str(w.message) for w in recwarn if 'gda CUDA op' in str(w.message)]
    assert len(messages) == 2 and all('built without CUDA' in m for m in messages)
