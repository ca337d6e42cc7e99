"""Per-filter gradient masks on core parameters: RICK freezes and prunes single filters, which a
FreezePolicy (whole tensors) cannot say. A hook on each parameter multiplies its gradient by the
parameter's current mask (None: untouched), for every loss that reaches it (adversarial, R1, path
length, other plugins' terms). With the core's Adam beta1 = 0 a zero gradient moves nothing, which
is exactly the official code's zeroing of `param.grad` before each optimiser step."""

import contextlib


class GradientMasks:
    def __init__(self):
        self.masks = {}
        self.active = True
        self._handles = []

    def watch(self, name, param):
        """Mask `param`'s gradients by self.masks[name] from now on."""
        def hook(grad):
            mask = self.masks.get(name)
            return grad if mask is None or not self.active else grad * mask
        flag = param.requires_grad   # torch registers hooks on tensors that require grad only
        param.requires_grad_(True)
        self._handles.append(param.register_hook(hook))
        param.requires_grad_(flag)

    @contextlib.contextmanager
    def paused(self):
        """No masking inside (the Fisher estimate needs every filter's gradient)."""
        self.active, previous = False, self.active
        try:
            yield
        finally:
            self.active = previous

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []
