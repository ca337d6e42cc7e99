"""The build / cache / lock / validate / fall-back machinery shared by our compiled ops, on the CPU.

Real builds here compile a tiny C++ extension (plain Python C API, about a second), which goes
through exactly the path the CUDA ops take except nvcc; the CUDA-specific checks are exercised
with a faked toolkit.
"""

import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from torch.utils import cpp_extension

from stylegan2_ada.ops import _cuda_bias_act, _cuda_upfirdn2d, custom_ops

TINY = textwrap.dedent('''
    #include <Python.h>
    #define ANSWER {answer}
    #define GDA_STR2(x) #x
    #define GDA_STR(x) GDA_STR2(x)
    #define GDA_CAT2(a, b) a##b
    #define GDA_CAT(a, b) GDA_CAT2(a, b)
    static PyObject* answer(PyObject*, PyObject*) {{ return PyLong_FromLong(ANSWER); }}
    static PyMethodDef methods[] = {{{{"answer", answer, METH_NOARGS, nullptr}}, {{nullptr, nullptr, 0, nullptr}}}};
    static PyModuleDef module_def = {{PyModuleDef_HEAD_INIT, GDA_STR(TORCH_EXTENSION_NAME), nullptr, -1, methods}};
    PyMODINIT_FUNC GDA_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) {{ return PyModule_Create(&module_def); }}
''')

needs_posix = pytest.mark.skipif(os.name == 'nt', reason='fakes a toolkit with a shell script')


def _tiny(directory, answer=42, broken=False, name='tiny.cpp'):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    text = TINY.format(answer=answer)
    path.write_text(text.replace('return PyLong', 'return undefined_thing + PyLong') if broken else text)
    return [path]


def _needs_compiler():
    problem = custom_ops.toolchain_problem(cuda=False)
    if problem:
        pytest.skip(problem)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No remembered plugins, no forced reference, a private cache."""
    monkeypatch.setattr(custom_ops, '_plugins', {})
    monkeypatch.delenv(custom_ops.ENV_REFERENCE, raising=False)
    monkeypatch.delenv(custom_ops.ENV_LOCK_TIMEOUT, raising=False)
    monkeypatch.setenv(custom_ops.ENV_CACHE_DIR, str(tmp_path / 'cache'))
    return tmp_path


def _gda_warnings(records):
    return [str(w.message) for w in records if 'gda CUDA op' in str(w.message)]


# ------------------------------------------------------------------------------- cache keys

def test_cache_key_follows_source_content_not_location(tmp_path):
    a = _tiny(tmp_path / 'a')
    b = _tiny(tmp_path / 'b')
    assert custom_ops.cache_key('tiny', a) == custom_ops.cache_key('tiny', b)
    assert custom_ops.cache_key('tiny', a) != custom_ops.cache_key('other', a)
    changed = _tiny(tmp_path / 'c', answer=43)
    assert custom_ops.cache_key('tiny', a) != custom_ops.cache_key('tiny', changed)


def test_cache_key_follows_torch_and_gpu_architecture(tmp_path, monkeypatch):
    cu = tmp_path / 'k.cu'
    cu.write_text('__global__ void k() {}\n')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')
    key_80 = custom_ops.cache_key('k', [cu])
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0')
    key_90 = custom_ops.cache_key('k', [cu])
    assert key_80 != key_90
    monkeypatch.setattr(torch.version, 'cuda', '99.1')
    assert custom_ops.cache_key('k', [cu]) != key_90
    monkeypatch.setattr(torch, '__version__', '0.0.1')
    cpp = _tiny(tmp_path)
    key_old_torch = custom_ops.cache_key('tiny', cpp)
    monkeypatch.setattr(torch, '__version__', '0.0.2')
    assert custom_ops.cache_key('tiny', cpp) != key_old_torch


def test_cache_root_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv(custom_ops.ENV_CACHE_DIR, str(tmp_path / 'mine'))
    assert custom_ops.cache_root() == tmp_path / 'mine'
    monkeypatch.delenv(custom_ops.ENV_CACHE_DIR)
    if os.name != 'nt':
        monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
        assert custom_ops.cache_root() == tmp_path / 'xdg' / 'gda' / 'cuda_ops'


# ------------------------------------------------------------------ forcing the reference

def test_env_var_forces_the_reference_without_building(fresh, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError('must not build')

    monkeypatch.setattr(custom_ops, 'build', no_build)
    monkeypatch.setenv(custom_ops.ENV_REFERENCE, '1')
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('tiny', _tiny(fresh)) is None
        assert _cuda_bias_act.op(act='lrelu') is None
        assert _cuda_upfirdn2d.op((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0) is None
    assert _gda_warnings(records) == []
    assert custom_ops._plugins == {}  # nothing remembered: unsetting the variable takes effect
    monkeypatch.setenv(custom_ops.ENV_REFERENCE, '0')
    assert not custom_ops.reference_forced()


# ------------------------------------------------------------------------ failing builds

def _fake_toolkit(root, release):
    (root / 'bin').mkdir(parents=True)
    nvcc = root / 'bin' / 'nvcc'
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {release}, V{release}.1"\n')
    nvcc.chmod(0o755)
    return root


@pytest.mark.parametrize('cause', ['torch_without_cuda', 'no_nvcc', 'nvcc_mismatch', 'no_cudart',
                                   'no_compiler', 'compile_error'])
def test_a_failing_build_is_reported_once_in_one_line(fresh, monkeypatch, cause):
    cu = fresh / 'src' / 'k.cu'
    cu.parent.mkdir()
    cu.write_text('__global__ void k() {}\n')
    sources, expected = [cu], None
    if cause == 'torch_without_cuda':
        monkeypatch.setattr(torch.version, 'cuda', None)
        expected = 'built without CUDA'
    if cause in ('no_nvcc', 'nvcc_mismatch', 'no_cudart'):
        monkeypatch.setattr(torch.version, 'cuda', '13.0')
    if cause == 'no_nvcc':
        monkeypatch.setattr(cpp_extension, 'CUDA_HOME', str(fresh / 'empty'))
        expected = 'nvcc not found'
    if cause in ('nvcc_mismatch', 'no_cudart'):
        if os.name == 'nt':
            pytest.skip('fakes nvcc with a shell script')
        release = '11.8' if cause == 'nvcc_mismatch' else '13.0'
        monkeypatch.setattr(cpp_extension, 'CUDA_HOME', str(_fake_toolkit(fresh / 'cuda', release)))
        expected = 'nvcc 11.8' if cause == 'nvcc_mismatch' else 'CUDA runtime library'
    if cause == 'no_compiler':
        sources = _tiny(fresh / 'src')
        monkeypatch.setenv('CXX', 'gda-no-such-compiler')
        expected = 'no C++ compiler'
    if cause == 'compile_error':
        _needs_compiler()
        sources = _tiny(fresh / 'src', broken=True)
        expected = 'undefined_thing'

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('tiny', sources) is None
        assert custom_ops.get_plugin('tiny', sources) is None  # remembered: no retry, no repeat
    messages = _gda_warnings(records)
    assert len(messages) == 1, messages
    message = messages[0]
    assert '\n' not in message
    assert message.startswith('Setting up gda CUDA op "tiny"... failed: ')
    assert message.endswith('; using the reference implementation')
    assert expected in message
    if cause == 'compile_error':
        assert 'tiny.cpp' in message and 'full log' in message
        leftovers = [p.name for p in (fresh / 'cache').iterdir() if '.tmp-' in p.name]
        assert leftovers == []


def test_one_line_finds_the_cause_in_a_build_log():
    log = ("Error building extension 'x': [1/2] c++ -MMD -I/include -c /b/x.cpp -o x.o\n"
           "FAILED: x.o\nc++ -MMD -I/include -c /b/x.cpp -o x.o\n"
           "/b/x.cpp:3:5: error: 'foo' was not declared in this scope\n"
           "ninja: build stopped: subcommand failed.\n")
    assert custom_ops.one_line(log) == "/b/x.cpp:3:5: error: 'foo' was not declared in this scope"
    link = ("[2/2] c++ x.o -o x.so\nFAILED: x.so\n/usr/bin/ld: cannot find -lcudart: No such file\n"
            "collect2: error: ld returned 1 exit status\n")
    assert custom_ops.one_line(link) == '/usr/bin/ld: cannot find -lcudart: No such file'
    assert custom_ops.one_line('something odd\nmore') == 'something odd'


# ------------------------------------------------------------------- building and caching

def test_build_publishes_one_directory_and_then_hits_the_cache(fresh, monkeypatch):
    _needs_compiler()
    cache = fresh / 'cache'
    module = custom_ops.build('tiny', _tiny(fresh / 'src'), cache_dir=cache)
    assert module.answer() == 42
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 1 and entries[0].startswith('gda_tiny_')

    def no_compile(*args, **kwargs):
        raise AssertionError('a cached build must not compile again')

    monkeypatch.setattr(cpp_extension, 'load', no_compile)
    cached = custom_ops.build('tiny', _tiny(fresh / 'elsewhere'), cache_dir=cache)
    assert cached.answer() == 42
    assert os.path.dirname(cached.__file__) == str(cache / entries[0])
    monkeypatch.undo()
    changed = custom_ops.build('tiny', _tiny(fresh / 'src', answer=43), cache_dir=cache)
    assert changed.answer() == 43
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_compiling_the_same_module_twice_in_a_process_publishes_it_twice(fresh):
    """torch would call the second build <name>_v1; each cache must hold the plain name."""
    _needs_compiler()
    sources = _tiny(fresh / 'src')
    for cache in (fresh / 'one', fresh / 'two'):
        module = custom_ops.build('tiny', sources, cache_dir=cache)
        library = cache / module.__name__ / os.path.basename(module.__file__)
        assert library.is_file() and library.name.startswith(module.__name__ + '.')
        assert '_v1' not in module.__name__


def test_get_plugin_sets_up_once_and_says_done(fresh, capsys):
    _needs_compiler()
    sources = _tiny(fresh / 'src')
    first = custom_ops.get_plugin('tiny', sources)
    assert first is not None and first.answer() == 42
    assert custom_ops.get_plugin('tiny', sources) is first
    assert capsys.readouterr().err.count('Setting up gda CUDA op "tiny"... done') == 1


def test_an_op_that_disagrees_with_the_reference_is_not_used(fresh):
    _needs_compiler()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        plugin = custom_ops.get_plugin('tiny', _tiny(fresh / 'src'), validate=lambda m: 'max error 1')
        assert plugin is None
    messages = _gda_warnings(records)
    assert len(messages) == 1 and 'disagrees with the reference: max error 1' in messages[0]


def test_mismatch_uses_dtype_tolerances():
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert custom_ops.mismatch(expected.float(), expected, 'y') is None
    assert custom_ops.mismatch((expected + 1e-3).half(), expected, 'y') is None
    problem = custom_ops.mismatch((expected + 1e-3).float(), expected, 'y')
    assert problem.startswith('y (torch.float32): max error')
    assert 'shape' in custom_ops.mismatch(expected[:1].float(), expected, 'y')


# ------------------------------------------------------------------ concurrency and locks

def _python(code, *args, **kwargs):
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


BUILD = '''
    import sys
    from stylegan2_ada.ops import custom_ops
    module = custom_ops.build('tiny', [sys.argv[1]], cache_dir=sys.argv[2])
    print(module.answer(), '.tmp-' in module.__file__)
'''

HOLD_LOCK = '''
    import sys, time
    from stylegan2_ada.ops import custom_ops
    with custom_ops.build_lock(sys.argv[1], 5):
        print('locked', flush=True)
        time.sleep(300)
'''


def test_concurrent_builds_compile_once_and_publish_once(tmp_path):
    _needs_compiler()
    source, = _tiny(tmp_path / 'src')
    cache = tmp_path / 'cache'
    procs = [_python(BUILD, source, cache) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    results = [out.split() for out, _ in outputs]
    assert all(answer == '42' for answer, _ in results)
    assert sum(built == 'True' for _, built in results) == 1  # the others loaded its build
    names = [p.name for p in cache.iterdir() if p.is_dir()]
    assert len(names) == 1 and '.tmp-' not in names[0]


def _lock_path(cache, sources):
    return cache / f'gda_tiny_{custom_ops.cache_key("tiny", sources)}.lock'


def test_a_killed_lock_holder_does_not_block_the_build(fresh, monkeypatch):
    _needs_compiler()
    sources = _tiny(fresh / 'src')
    cache = fresh / 'cache'
    cache.mkdir()
    holder = _python(HOLD_LOCK, _lock_path(cache, sources))
    try:
        assert holder.stdout.readline().strip() == 'locked'
    finally:
        holder.kill()  # like a build killed by OOM or a scheduler: its lock file stays behind
        holder.communicate()
    assert _lock_path(cache, sources).exists()
    monkeypatch.setenv(custom_ops.ENV_LOCK_TIMEOUT, '60')
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no "still locked" warning
        assert custom_ops.build('tiny', sources, cache_dir=cache).answer() == 42
    assert time.monotonic() - start < 50


def test_a_live_lock_holder_is_waited_for_only_until_the_timeout(fresh, monkeypatch):
    _needs_compiler()
    sources = _tiny(fresh / 'src')
    cache = fresh / 'cache'
    cache.mkdir()
    holder = _python(HOLD_LOCK, _lock_path(cache, sources))
    try:
        assert holder.stdout.readline().strip() == 'locked'
        monkeypatch.setenv(custom_ops.ENV_LOCK_TIMEOUT, '1')
        with pytest.warns(RuntimeWarning, match='still locked after 1 s'):
            assert custom_ops.build('tiny', sources, cache_dir=cache).answer() == 42
    finally:
        holder.kill()
        holder.communicate()
