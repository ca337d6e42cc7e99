"""distributed.process_device: which torch device a training process takes."""

import torch

from stylegan2_ada import distributed


def _fake_cuda(monkeypatch, current=3):
    chosen = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: current)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: chosen.append(device))
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return chosen


def test_plain_cuda_means_the_current_device_with_its_index(monkeypatch):
    # torch.cuda.set_device refuses a device without an index ('cuda'): the first GPU run of
    # `gda train --device cuda` failed on exactly that.
    chosen = _fake_cuda(monkeypatch)
    for requested in ('cuda', None):
        assert distributed.process_device(requested, 0) == torch.device('cuda', 3)
    assert chosen == [torch.device('cuda', 3)] * 2


def test_an_explicit_index_and_the_cpu_are_kept(monkeypatch):
    chosen = _fake_cuda(monkeypatch)
    assert distributed.process_device('cuda:1', 0) == torch.device('cuda', 1)
    assert distributed.process_device('cpu', 0) == torch.device('cpu')
    assert chosen == [torch.device('cuda', 1)]


def test_each_launched_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    chosen = _fake_cuda(monkeypatch)
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.setenv(name, '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert distributed.process_device(None, 1) == torch.device('cuda', 1)
    assert chosen == [torch.device('cuda', 1)]
