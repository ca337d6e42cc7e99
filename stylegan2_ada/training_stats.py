"""Per-tick statistics: running means of reported values, reduced across processes at each tick.

Values stay on the device until the tick ends, so reporting never forces a GPU sync. Each name
also keeps the first iteration at which it was non-finite (a device-side minimum, no sync either),
so that a diverged run can say where it went wrong.
"""

import math

import torch


class TickStats:
    def __init__(self, device):
        self.device = device
        self.iteration = 0    # the iteration being computed (1 = the first), set by the loop
        self._sums = {}
        self._first_bad = {}
        self.first_non_finite = {}   # name -> iteration, from the last collect()

    def report(self, name, value):
        value = torch.as_tensor(value, device=self.device).detach().to(torch.float64)
        entry = self._sums.get(name)
        pair = torch.stack([value.sum(), value.new_tensor(value.numel())])
        self._sums[name] = pair if entry is None else entry + pair
        marker = torch.where(pair[0].isfinite(), math.inf, float(self.iteration))
        first = self._first_bad.get(name)
        self._first_bad[name] = marker if first is None else torch.minimum(first, marker)

    def collect(self, all_reduce=None):
        """Means since the last collect, all-reduced when `all_reduce` is given; then reset.
        `first_non_finite` then holds this process's first non-finite iteration per name."""
        names = sorted(self._sums)
        result = {}
        self.first_non_finite = {}
        if names:
            sums = torch.stack([self._sums[name] for name in names])
            if all_reduce is not None:
                all_reduce(sums)
            markers = torch.stack([self._first_bad[name] for name in names])
            rows = torch.cat([sums, markers[:, None]], dim=1).tolist()   # the tick's one sync
            for name, (total, count, first) in zip(names, rows):
                if count > 0:
                    result[name] = total / count
                if math.isfinite(first):
                    self.first_non_finite[name] = int(first)
        self._sums = {}
        self._first_bad = {}
        return result
