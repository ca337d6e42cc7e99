"""Settings for the whole suite."""

import pytest
import torch


@pytest.fixture(autouse=True, scope='session')
def fast_cpu_for_tiny_networks():
    """One thread and no oneDNN: on the tiny networks of the tests, oneDNN's per-shape set-up and
    a second thread (the CI machine has two cores) cost more than they save."""
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    yield
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
