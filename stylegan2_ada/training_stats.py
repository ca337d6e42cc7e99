"""Per-tick statistics: running means of reported values, reduced across processes at each tick.

Values stay on the device until the tick ends, so reporting never forces a GPU sync.
"""

import torch


class TickStats:
    def __init__(self, device):
        self.device = device
        self._sums = {}

    def report(self, name, value):
        value = torch.as_tensor(value, device=self.device).detach().to(torch.float64)
        entry = self._sums.get(name)
        pair = torch.stack([value.sum(), value.new_tensor(value.numel())])
        self._sums[name] = pair if entry is None else entry + pair

    def collect(self, all_reduce=None):
        """Means since the last collect, all-reduced when `all_reduce` is given; then reset."""
        names = sorted(self._sums)
        result = {}
        if names:
            stacked = torch.stack([self._sums[name] for name in names])
            if all_reduce is not None:
                all_reduce(stacked)
            for name, (total, count) in zip(names, stacked.tolist()):
                if count > 0:
                    result[name] = total / count
        self._sums = {}
        return result
