"""What the benchmarks record about the machine they measured on."""

import contextlib
import pathlib
import platform


def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo, else what platform knows)."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'
