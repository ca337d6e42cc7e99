"""The gda host: plugin manager, adaptation runs built from plugin hooks, and the `gda` CLI."""

import os

# Idle OpenMP threads sleep instead of spinning (read when torch loads, so before any import of
# it). On a CPU that other jobs share, a spinning thread that loses its core stalls every
# parallel op: 2-thread CPU training measured ~10x slower than with sleeping threads. Set
# OMP_WAIT_POLICY yourself to override.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
