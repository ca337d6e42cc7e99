"""Helpers shared by the test suite: an ordinary package, importable because pytest.ini puts
tests/support on sys.path (`pythonpath = tests/support`). tests/ itself cannot go there: its folders
(tests/stylegan2_ada, tests/gda_core, ...) mirror the real packages' names.

- plugins: tiny data and source networks, plugin managers, short `gda train` runs
  (`from gda_testkit import plugins as HP`; the `tiny` fixture in tests/conftest.py uses it);
- cdc: a CDC-plugin (idc, patchd) run built by the real host path and stopped before its first
  iteration, and hand-made Iteration objects;
- checkpoint: NVIDIA-format network pickles (PyTorch and TensorFlow) written without NVIDIA's
  code, and the tiny golden networks in tests/data (the `ckpt` fixture);
- rosinality: a minimal re-implementation of rosinality/stylegan2-pytorch's networks and
  checkpoints, written from its model.py;
- metric_standins: small TorchScript stand-ins for NVIDIA's inception and vgg16 detectors (the
  `standins` fixture).

Fixtures live in the conftest.py files; this package holds plain functions and classes only.
"""
