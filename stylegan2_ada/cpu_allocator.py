"""Keep freed memory in the process on CPU training, so big tensors do not fault in fresh pages.

Every training step allocates and frees the same few-megabyte activations hundreds of times.
glibc's malloc serves blocks that large with mmap and gives them back with munmap (or trims the
heap top), so each new tensor starts on untouched pages, and the kernel's page faults (slow
inside virtual machines) then cost as much as the arithmetic of the small convolutions that
fill them. Raising the mmap and trim thresholds makes malloc reuse the heap instead; the
process keeps its peak working set, which training reaches every iteration anyway.
"""

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1   # mallopt parameter numbers (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2 ** 20   # glibc's largest allowed value on 64-bit systems
_TRIM_THRESHOLD = 2 ** 30

_applied = None


def keep_freed_memory():
    """Tell glibc's malloc to reuse freed memory for blocks up to 32 MiB (once per process).

    Returns True when the setting is in effect; False where the C library is not glibc (other
    allocators manage their own caches), in which case nothing changes.
    """
    global _applied
    if _applied is None:
        _applied = _set_glibc_thresholds()
    return _applied


def _set_glibc_thresholds():
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
