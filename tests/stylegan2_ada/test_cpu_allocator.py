"""keep_freed_memory: freed multi-megabyte tensors give their pages back to the next tensors."""

import os
import platform
import subprocess
import sys

import pytest

from stylegan2_ada.cpu_allocator import keep_freed_memory

GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'
PAGES_PER_CYCLE = 20 * 2 ** 20 // 4096

# Page faults per cycle of a training-like pattern: 20 MiB of tensors made and freed each cycle.
PROBE = '''
import resource, sys, torch
from stylegan2_ada.cpu_allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == 'tuned' else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def cycle():
    x = torch.ones(8, 64, 32, 32)
    z = torch.ones(8, 64, 64, 64)
    return float((x * 2).sum() + (z + 1).sum())

for _ in range(3):
    cycle()
start = faults()
for _ in range(10):
    cycle()
print(applied, (faults() - start) // 10)
'''


def _faults_per_cycle(mode):
    # Start every process from glibc's least reusing setting (each block of 128 KiB or more is
    # mapped and unmapped), so that the outcome does not hang on glibc's adaptive thresholds.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072')
    out = subprocess.run([sys.executable, '-c', PROBE, mode], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == 'True', int(out[1])


@pytest.mark.skipif(not GLIBC, reason='tunes glibc malloc only')
def test_freed_memory_is_reused_without_page_faults():
    applied, tuned = _faults_per_cycle('tuned')
    _, untuned = _faults_per_cycle('untuned')
    assert applied
    assert untuned > PAGES_PER_CYCLE * 0.9    # every tensor on fresh pages
    assert tuned < PAGES_PER_CYCLE * 0.1      # the freed pages are reused


def test_idempotent_and_reports_whether_it_applies():
    assert keep_freed_memory() is GLIBC
    assert keep_freed_memory() is GLIBC
