"""SGD with momentum and weight decay that does torch.optim.SGD's CPU arithmetic, op for op,
without torch.optim's import of torch._dynamo.

``torch.optim.Optimizer`` wraps ``add_param_group`` (so its constructor), ``zero_grad`` and
``step`` in ``torch._disable_dynamo`` and graph breaks, whose first call imports
``torch._dynamo``: 1-3 s, more than the whole 500-epoch synthetic training. On the CPU
torch.optim.SGD runs its single-tensor loop (its foreach kernels are for accelerators);
``SGD.step`` runs the same tensor ops in the same order, so every weight and loss is the
same bit for bit (``tests/train/test_sgd.py`` checks it against torch.optim.SGD).
"""
from __future__ import annotations

from typing import Iterable

import torch


class SGD:
    """``torch.optim.SGD(params, lr, momentum, weight_decay)`` (no dampening, no Nesterov) for CPU tensors."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def step(self) -> None:
        """torch.optim.sgd._single_tensor_sgd: d = g + wd·p; buf = m·buf + d (buf = d at first); p -= lr·buf."""
        with torch.no_grad():
            for i, param in enumerate(self.params):
                if param.grad is None:
                    continue
                grad = param.grad
                if self.weight_decay != 0:
                    grad = grad.add(param, alpha=self.weight_decay)
                if self.momentum != 0:
                    buf = self.momentum_buffers[i]
                    if buf is None:
                        buf = self.momentum_buffers[i] = grad.detach().clone()
                    else:
                        buf.mul_(self.momentum).add_(grad, alpha=1)  # torch: alpha = 1 - dampening
                    grad = buf
                param.add_(grad, alpha=-self.lr)
