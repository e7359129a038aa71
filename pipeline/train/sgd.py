"""SGD with momentum and weight decay that does torch.optim.SGD's CPU arithmetic, op for op,
without torch.optim's import of torch._dynamo.

``torch.optim.Optimizer`` wraps ``add_param_group`` (so its constructor), ``zero_grad`` and
``step`` in ``torch._disable_dynamo`` and graph breaks, whose first call imports
``torch._dynamo``: 1-3 s, more than the whole 500-epoch synthetic training. On the CPU
torch.optim.SGD runs its single-tensor loop (its foreach kernels are for accelerators);
``sgd_update`` runs the same tensor ops in the same order, so every weight and loss is the
same bit for bit (``tests/train/test_sgd.py`` checks it against torch.optim.SGD). It is the
one SGD step of the project's torch code: ``SGD.step`` (the training loop) and the batched
trainers' torch paths (``capacity.multiseed.sgd_epochs``' torch engine,
``capacity.pattern.train_pattern``) call it. The compiled 1D engine
(``capacity/fused_loops.py: step``) does the same arithmetic in its loop, each product and sum
rounded on its own (tests/train/test_sgd.py replays it to the bit).
"""
from __future__ import annotations

from typing import Iterable, MutableSequence, Sequence

import torch


def sgd_update(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
               bufs: MutableSequence[torch.Tensor | None], *, lr: float, momentum: float = 0.0,
               weight_decay: float = 0.0, grads_are_scratch: bool = False) -> None:
    """One step of torch.optim.sgd._single_tensor_sgd (no dampening, no Nesterov), in place, without autograd:
    d = g + wd·p; buf = m·buf + d (buf = d at the first step, where ``bufs[i]`` is None); p -= lr·buf.

    ``bufs`` holds one momentum buffer per parameter (None until its first step) and is filled here.
    A None gradient skips its parameter, as torch does. ``grads_are_scratch``: the caller owns the
    gradient tensors and lets the weight decay be added into them (saves one allocation per step).
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        if grad is None:
            continue
        if weight_decay != 0:
            grad = grad.add_(param, alpha=weight_decay) if grads_are_scratch else grad.add(param, alpha=weight_decay)
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad)  # torch: alpha = 1 - dampening = 1
            grad = buf
        param.add_(grad, alpha=-lr)


class SGD:
    """``torch.optim.SGD(params, lr, momentum, weight_decay)`` (no dampening, no Nesterov) for CPU tensors."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def state_dict(self) -> dict:
        """The momentum buffers (a checkpoint's optimizer state), as ``torch.optim`` names its own."""
        return {"momentum_buffers": [None if b is None else b.clone() for b in self.momentum_buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.momentum_buffers = [None if b is None else b.to(p.device).clone()
                                 for b, p in zip(state["momentum_buffers"], self.params)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def step(self) -> None:
        with torch.no_grad():
            sgd_update(self.params, [p.grad for p in self.params], self.momentum_buffers, lr=self.lr,
                       momentum=self.momentum, weight_decay=self.weight_decay)
