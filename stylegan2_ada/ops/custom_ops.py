"""Build our CUDA ops once, cache them on disk, check them, and otherwise fall back to the reference.

A compiled op is used only after it has been built (or found in the cache) and has agreed with
the pure-PyTorch reference on small random inputs in this process. Whatever goes wrong (a torch
without CUDA, no nvcc, a toolkit that does not match torch, a compile error, a wrong result) is
reported once per process in one line, and the op then runs the reference implementation.

Cache: `<root>/<module>/` holds one finished build, where <module> = gda_<op>_<key> and the key
hashes the sources, the build flags, torch's and CUDA's versions, the Python ABI and the GPU
architectures. The root is $GDA_OPS_CACHE_DIR, else $XDG_CACHE_HOME/gda/cuda_ops (default
~/.cache/gda/cuda_ops). A build runs in a private temporary directory that becomes <module>/ by
one atomic rename, so concurrent processes never see half a build. A lock file only stops them
from doing the same work twice: it is an OS lock that dies with its holder, and a process that
waited $GDA_OPS_LOCK_TIMEOUT seconds (default 600) for a live holder builds without it.

Other switches: GDA_OPS_REFERENCE=1 forces the reference ops; GDA_OPS_VERBOSE=1 shows the
compiler's output.
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

ENV_REFERENCE = 'GDA_OPS_REFERENCE'
ENV_CACHE_DIR = 'GDA_OPS_CACHE_DIR'
ENV_VERBOSE = 'GDA_OPS_VERBOSE'
ENV_LOCK_TIMEOUT = 'GDA_OPS_LOCK_TIMEOUT'

SOURCE_DIR = Path(__file__).resolve().parent / 'cuda'
CXX_FLAGS = ('/O2',) if os.name == 'nt' else ('-O3',)
CUDA_FLAGS = ('-O3',)

# (rtol, atol) for comparing a compiled op with the reference computed in float64.
TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}

_plugins = {}  # op name -> loaded module, or None once it failed in this process
_plugins_lock = threading.Lock()


class BuildError(RuntimeError):
    """A build that cannot succeed here; str() is the one-line reason."""


def _flag(name):
    return os.environ.get(name, '').strip().lower() not in ('', '0', 'false', 'no', 'off')


def reference_forced():
    """True when GDA_OPS_REFERENCE asks for the reference ops (checked on every op lookup)."""
    return _flag(ENV_REFERENCE)


def cache_root():
    """Directory holding finished builds (see the module docstring for the override)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.name == 'nt' and os.environ.get('LOCALAPPDATA'):
        return Path(os.environ['LOCALAPPDATA']) / 'gda' / 'cuda_ops'
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'gda' / 'cuda_ops'


def _uses_cuda(sources):
    return any(Path(s).suffix == '.cu' for s in sources)


def _arch_tag():
    """The GPU architectures torch will compile for: TORCH_CUDA_ARCH_LIST, else the visible GPUs."""
    env = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if env and env != 'native':
        return env
    try:
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    except Exception:  # no driver: torch then compiles for its default list
        caps = set()
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(caps)) or 'default'


def cache_key(name, sources, extra_cuda_cflags=()):
    """Content hash naming one build: same sources (by name and bytes) and toolchain, same key."""
    h = hashlib.sha256()
    for path in sorted((Path(s) for s in sources), key=lambda p: p.name):
        h.update(path.name.encode() + b'\0' + path.read_bytes() + b'\0')
    cuda = _uses_cuda(sources)
    facts = [name, torch.__version__, torch.version.cuda if cuda else None,
             sys.implementation.cache_tag, sys.platform, platform.machine(),
             _arch_tag() if cuda else None, list(CXX_FLAGS), list(extra_cuda_cflags) if cuda else []]
    h.update(json.dumps(facts).encode())
    return h.hexdigest()[:20]


def _nvcc_version(nvcc):
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f'cannot run {nvcc}: {exc}') from exc
    match = re.search(r'release (\d+)\.(\d+)', out)
    if match is None:
        raise BuildError(f'cannot read the CUDA version from "{nvcc} --version"')
    return int(match.group(1)), int(match.group(2))


def _cudart_found(cuda_home):
    home = Path(cuda_home)
    if os.name == 'nt':
        return (home / 'lib' / 'x64' / 'cudart.lib').is_file()
    patterns = ['lib64/libcudart.so*', 'lib/libcudart.so*', 'targets/*/lib/libcudart.so*']
    return any(any(home.glob(p)) for p in patterns)


def _ensure_ninja_on_path():
    """pip's ninja lives beside the interpreter, which is not on PATH in an unactivated venv."""
    if shutil.which('ninja'):
        return
    try:
        import ninja
    except ImportError:
        return
    bin_dir = getattr(ninja, 'BIN_DIR', None)
    if bin_dir:
        os.environ['PATH'] = bin_dir + os.pathsep + os.environ.get('PATH', '')


def toolchain_problem(cuda):
    """One line naming what is missing to compile an extension (CUDA sources if `cuda`), or None."""
    from torch.utils import cpp_extension
    if cuda:
        if torch.version.cuda is None:
            return f'this PyTorch ({torch.__version__}) was built without CUDA'
        home = cpp_extension.CUDA_HOME
        if not home:
            return 'no CUDA toolkit found: nvcc is not on PATH and CUDA_HOME is not set'
        nvcc = os.path.join(home, 'bin', 'nvcc.exe' if os.name == 'nt' else 'nvcc')
        if not os.path.isfile(nvcc):
            return f'nvcc not found at {nvcc} (set CUDA_HOME to a CUDA toolkit)'
        major, minor = _nvcc_version(nvcc)
        if major != int(torch.version.cuda.split('.')[0]):
            return (f'nvcc {major}.{minor} ({nvcc}) does not match the CUDA {torch.version.cuda} '
                    f'PyTorch was built with')
        if not _cudart_found(home):
            return (f'the CUDA runtime library is not under CUDA_HOME={home} '
                    f'(set CUDA_HOME to the toolkit root, e.g. /usr/local/cuda)')
    _ensure_ninja_on_path()
    if not cpp_extension.is_ninja_available():
        return 'ninja not found (pip install ninja)'
    cxx = os.environ.get('CXX') or ('cl' if os.name == 'nt' else 'c++')
    if shutil.which(cxx) is None:
        return f'no C++ compiler: {cxx!r} is not on PATH'
    return None


def one_line(text):
    """The line of a build log (or exception text) that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    noise = ('Error building extension', 'FAILED:', 'ninja: build stopped', 'collect2:', '[')
    for line in lines:
        if (re.search(r'error|undefined reference|cannot find|no such file', line, re.I)
                and not line.startswith(noise) and ' -I' not in line):
            return line[:300]
    for line in lines:
        if line.startswith('collect2:'):
            return line[:300]
    return (lines[0] if lines else type(text).__name__)[:300]


def _import_module(module_name, path):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lock_timeout():
    try:
        return float(os.environ.get(ENV_LOCK_TIMEOUT, 600))
    except ValueError:
        return 600.0


@contextlib.contextmanager
def build_lock(path, timeout):
    """Hold an OS lock on `path` (released by the kernel if this process dies) for the block.

    Waits at most `timeout` seconds for a live holder, then yields False and the caller goes on
    without the lock: that only risks building twice, since builds are published atomically.
    """
    import filelock  # a dependency of torch
    lock = filelock.FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        warnings.warn(f'gda CUDA ops: {path} is still locked after {timeout:g} s; building without '
                      f'the lock', RuntimeWarning, stacklevel=3)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _remove_stale_temp_dirs(root, module_name, max_age):
    """Drop temporary build directories of crashed builds of this module."""
    now = time.time()
    for tmp in root.glob(f'{module_name}.tmp-*'):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > max_age:
                shutil.rmtree(tmp, ignore_errors=True)


def _compile(module_name, sources, root, cuda, extra_cuda_cflags, verbose):
    """Compile in a temporary directory, then publish it as root/module_name by an atomic rename."""
    from torch.utils import cpp_extension
    final = root / module_name
    tmp = Path(tempfile.mkdtemp(prefix=f'{module_name}.tmp-', dir=root))
    log = root / f'{module_name}.log'
    # torch renames a module compiled twice in one process (in another directory) to <name>_v1,
    # which would publish a library that no cache lookup finds; our names are content-addressed
    # already, so its memory of earlier builds is dropped.
    versioner = getattr(cpp_extension, 'JIT_EXTENSION_VERSIONER', None)
    if versioner is not None:
        versioner.entries.pop(module_name, None)
    try:
        copies = [Path(shutil.copy2(src, tmp / Path(src).name)) for src in sources]
        compiled = [str(c) for c in copies if c.suffix in ('.cpp', '.cu')]
        module = cpp_extension.load(
            name=module_name, sources=compiled, build_directory=str(tmp),
            extra_cflags=list(CXX_FLAGS), extra_cuda_cflags=list(extra_cuda_cflags),
            with_cuda=cuda, verbose=verbose)
        if Path(module.__file__).name != module_name + _lib_ext():
            raise RuntimeError(f'error: torch built {Path(module.__file__).name}, '
                               f'not {module_name}{_lib_ext()}')
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            log.write_text(str(exc), encoding='utf-8')
        cause = one_line(str(exc).replace(str(tmp) + os.sep, ''))
        raise BuildError(f'{cause} (full log: {log})') from exc
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():  # Windows will not move a directory holding a loaded DLL: copy it
            with contextlib.suppress(OSError):
                staged = Path(tempfile.mkdtemp(prefix=f'{module_name}.tmp-', dir=root))
                shutil.copytree(tmp, staged, dirs_exist_ok=True)
                os.rename(staged, final)
        # else another process published the same build first; theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        log.unlink()
    return module


def build(name, sources, extra_cuda_cflags=CUDA_FLAGS, cache_dir=None, verbose=None):
    """Return the compiled extension for `sources`, from the cache or freshly built.

    The module is named gda_<name>_<key>. Raises BuildError with a one-line reason when it cannot
    be built or loaded.
    """
    sources = [Path(s) for s in sources]
    cuda = _uses_cuda(sources)
    module_name = f'gda_{name}_{cache_key(name, sources, extra_cuda_cflags)}'
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    library = root / module_name / (module_name + _lib_ext())
    verbose = _flag(ENV_VERBOSE) if verbose is None else verbose

    def load_cached():
        try:
            return _import_module(module_name, library)
        except Exception as exc:
            raise BuildError(f'cannot load the cached build {library}: {one_line(exc)} '
                             f'(delete {library.parent} to rebuild)') from exc

    if library.is_file():
        return load_cached()
    problem = toolchain_problem(cuda)
    if problem:
        raise BuildError(problem)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f'cannot create the cache directory {root}: {exc.strerror} '
                         f'(set {ENV_CACHE_DIR})') from exc
    timeout = _lock_timeout()
    with build_lock(root / f'{module_name}.lock', timeout) as locked:
        if library.is_file():  # built by the process we waited for
            return load_cached()
        if locked:
            _remove_stale_temp_dirs(root, module_name, max_age=timeout)
        return _compile(module_name, sources, root, cuda, extra_cuda_cflags, verbose)


def _lib_ext():
    from torch.utils import cpp_extension
    return getattr(cpp_extension, 'LIB_EXT', '.pyd' if os.name == 'nt' else '.so')


def get_plugin(name, sources, validate=None):
    """The compiled op `name` for this process, or None when the reference must be used.

    `sources` are file names in ops/cuda/. Built (or loaded) and checked with `validate(module)`
    (returns None or a one-line problem) at most once per process; the outcome is reported once:
    `Setting up gda CUDA op "name"... done` on stderr, or a RuntimeWarning saying why it failed.
    """
    if reference_forced():
        return None
    with _plugins_lock:
        if name in _plugins:
            return _plugins[name]
        head = f'Setting up gda CUDA op "{name}"...'
        try:
            module = build(name, [SOURCE_DIR / s for s in sources])
            problem = validate(module) if validate is not None else None
            if problem:
                raise BuildError(f'the compiled op disagrees with the reference: {problem}')
        except Exception as exc:
            _plugins[name] = None
            reason = (str(exc) if isinstance(exc, BuildError)
                      else f'{type(exc).__name__}: {one_line(exc)}')
            warnings.warn(f'{head} failed: {reason}; using the reference implementation',
                          RuntimeWarning, stacklevel=3)
            return None
        _plugins[name] = module
        print(f'{head} done', file=sys.stderr)
        return module


@contextlib.contextmanager
def validation_mode():
    """Gradients on and autocast off, whatever the caller's context (no_grad, inference_mode,
    autocast), so that a validation run compares like with like."""
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast('cuda', enabled=False):
        yield


def mismatch(actual, expected, what):
    """One line describing how `actual` differs from the float64 `expected`, or None if it agrees."""
    rtol, atol = TOLERANCES[actual.dtype]
    if actual.shape != expected.shape:
        return f'{what}: shape {tuple(actual.shape)} instead of {tuple(expected.shape)}'
    a, e = actual.detach().double(), expected.detach().double()
    err = (a - e).abs()
    if bool((err <= atol + rtol * e.abs()).all()):
        return None
    return (f'{what} ({actual.dtype}): max error {err.max().item():.3g} '
            f'beyond {atol:g} + {rtol:g}*|ref|')
