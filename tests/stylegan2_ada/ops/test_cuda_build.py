"""Compiling the CUDA extensions, which needs nvcc and a CUDA build of torch but no GPU.

The compile tests are marked cuda_build (excluded from the default run; `pytest -m cuda_build`)
and skip, naming the cause, where the toolchain is missing. The source-list check runs always.
"""

import re
import warnings

import pytest

from stylegan2_ada.ops import _cuda_bias_act, _cuda_upfirdn2d, custom_ops

OPS = [('bias_act', _cuda_bias_act.SOURCES), ('upfirdn2d', _cuda_upfirdn2d.SOURCES)]


def _skip_without_toolchain():
    problem = custom_ops.toolchain_problem(cuda=True)
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize('name, sources', OPS)
def test_source_lists_cover_every_local_include(name, sources):
    """The cache key hashes exactly the listed files, so each local header must be listed."""
    for source in sources:
        text = (custom_ops.SOURCE_DIR / source).read_text()
        for header in re.findall(r'#include "([^"]+)"', text):
            assert header in sources, f'{source} includes {header}, missing from {name} SOURCES'


@pytest.mark.cuda_build
@pytest.mark.parametrize('name, sources', OPS)
def test_extension_compiles(tmp_path, name, sources):
    _skip_without_toolchain()
    module = custom_ops.build(name, [custom_ops.SOURCE_DIR / s for s in sources], cache_dir=tmp_path)
    assert callable(getattr(module, name))
    published = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert published == [module.__name__]


@pytest.mark.cuda_build
def test_a_cuda_compile_error_is_reported_in_one_line(tmp_path, monkeypatch):
    _skip_without_toolchain()
    monkeypatch.setattr(custom_ops, '_plugins', {})
    monkeypatch.delenv(custom_ops.ENV_REFERENCE, raising=False)
    monkeypatch.setenv(custom_ops.ENV_CACHE_DIR, str(tmp_path / 'cache'))
    source = tmp_path / 'broken.cu'
    source.write_text('__global__ void kernel(float* y) { y[0] = not_declared_anywhere; }\n')
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('broken', [source]) is None
    messages = [str(w.message) for w in records if 'gda CUDA op' in str(w.message)]
    assert len(messages) == 1 and '\n' not in messages[0]
    assert 'broken.cu' in messages[0] and 'not_declared_anywhere' in messages[0]
