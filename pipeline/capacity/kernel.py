"""The batched 1D detector's forward and backward, hand-written for many models at once.

Why it is fast (the model is tiny, so per-op overhead and memory traffic dominate):

* **Units as columns.** Every (model, filter) pair is one column ("unit") of a parameter
  matrix (k taps + bias + linear weight, U columns); configurations with the same k but
  different F are simply more columns. Each model also has one linear bias.
* **Distinct windows.** The conv only ever sees the k-wide windows of X, and most of them
  repeat (all zeros, or the same bump at the same offset), so the conv is one matmul
  over the P distinct windows: ``Z = windows (P, k) @ taps (k, U) + bias``.
* **Row groups.** Global max pooling needs only which windows a row has (listed in order
  of first appearance, for ties; see below), so rows with the same list share one output
  and enter the loss through their count and their number of positives. Both rewrites
  are exact, for any data.
* **Closed-form backward.** The max routes each (group, unit) gradient to the window that
  attains it, so the tap gradient is one matmul of the windows with the routed gradient.
  The routing is a (G, M, U) mask (``eq`` with the max, ``index_add_`` of whole rows), not
  ``torch.max``'s index and a (G, U) ``scatter_add_``: the two agree bit for bit
  (tests/capacity/test_kernel.py), but on the CPU both of the latter are scalar loops and the
  default capacity grid trained 1.4-2.3x slower with them (torch 2.14, 1 thread).

The windows, the batch layout and the accuracy are ``windows.py``'s (numpy). These torch passes, with
``train.sgd``'s step in ``sgd_epochs``, are ``multiseed.py``'s engine off the CPU (and the forward is how the
diagnosis looks at weights); on the CPU ``fused.py`` runs the same rewrite as one compiled loop, 2.7x faster
on one thread over the default grid.
"""
from __future__ import annotations

import torch

from pipeline.capacity.windows import Batch, WindowIndex, accuracy  # noqa: F401 - kernel.accuracy, as before
from pipeline.train.sgd import sgd_update


# --------------------------------------------------------------------------- forward/backward
class Workspace:
    """Buffers reused every epoch: fresh multi-MB tensors per op cost more than the arithmetic."""

    def __init__(self, index: WindowIndex, units: torch.Tensor):
        u, kw = units.shape[1], dict(dtype=units.dtype, device=units.device)
        self.z = torch.empty(index.windows.shape[0], u, **kw)  # (P + 1, U)
        self.z[-1] = float("-inf")  # the filler window: never the max
        self.zg = torch.empty(index.ids.shape[0], u, **kw)  # (G·M, U)
        self.chosen = torch.empty(index.groups, index.per_group, u, **kw)  # (G, M, U)
        self.active = torch.empty(index.groups, u, **kw)  # (G, U)
        self.per_window = torch.empty(index.windows.shape[0], u, **kw)  # (P + 1, U)


def forward(units: torch.Tensor, const: torch.Tensor, index: WindowIndex, batch: Batch,
            ws: Workspace | None = None):
    """Logits (G, models) of every row group, with the pieces that the backward pass needs."""
    k = batch.k
    ws = ws or Workspace(index, units)
    torch.addmm(units[k], index.windows[:-1], units[:k], out=ws.z[:-1])  # (P, U) pre-activation per window
    torch.index_select(ws.z, 0, index.ids, out=ws.zg)
    zg = ws.zg.view(index.groups, index.per_group, -1)  # (G, M, U)
    zmax = zg.amax(dim=1)  # (G, U)
    h = zmax.clamp_min(0)  # relu(max) = max(relu)
    logits = torch.zeros(index.groups, batch.models, dtype=units.dtype, device=units.device)
    logits.index_add_(1, batch.model_of_unit, h * units[k + 1]).add_(const)  # (G, models)
    return logits, zg, zmax, h, ws


def backward(units: torch.Tensor, index: WindowIndex, batch: Batch, fwd, grad_units: torch.Tensor) -> torch.Tensor:
    """d(mean BCE)/d(parameters): unit gradients into ``grad_units`` (k + 2, U); returns d/d(const)."""
    k = batch.k
    logits, zg, zmax, h, ws = fwd
    dl = torch.sigmoid(logits).mul_(index.count).sub_(index.positives).div_(index.n)  # (G, models)
    dl_units = dl.index_select(1, batch.model_of_unit)  # (G, U)
    torch.sum(h * dl_units, dim=0, out=grad_units[k + 1])
    coef = torch.gt(zmax, 0, out=ws.active).mul_(units[k + 1]).mul_(dl_units)  # (G, U) dL/dz at the max
    torch.sum(coef, dim=0, out=grad_units[k])
    chosen = torch.eq(zg, zmax.unsqueeze(1), out=ws.chosen)  # (G, M, U) 1.0 at the maximal window(s)
    if _has_ties(chosen):
        _first_only(chosen)  # a rare exact tie: keep the first window, as torch's max pool does
    routed = chosen.mul_(coef.unsqueeze(1))  # (G, M, U) dL/dz per window slot
    per_window = ws.per_window.zero_().index_add_(0, index.ids, routed.view(-1, routed.shape[2]))  # (P + 1, U)
    torch.mm(index.windows.T, per_window, out=grad_units[:k])  # (k, U)
    return dl.sum(dim=0)


def sgd_epochs(units: torch.Tensor, const: torch.Tensor, index: WindowIndex, batch: Batch, *, lr: float,
               momentum: float, weight_decay: float, epochs: int, bufs, on_epoch, look_at) -> list[torch.Tensor]:
    """``multiseed.sgd_epochs`` on the torch engine (any device): these passes and ``train.sgd``'s step."""
    params, grads = [units, const], [torch.empty_like(units), None]
    bufs = [b.clone() for b in bufs] if bufs else [None, None]
    ws = Workspace(index, units)
    watched = None if look_at is None else set(look_at)
    with torch.no_grad():
        for epoch in range(1, epochs + 1):
            fwd = forward(units, const, index, batch, ws)
            grads[1] = backward(units, index, batch, fwd, grads[0])
            if on_epoch is not None and (watched is None or epoch in watched):
                on_epoch(epoch, fwd[0], grads[0], grads[1])
            sgd_update(params, grads, bufs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                       grads_are_scratch=True)  # both gradients are this epoch's own tensors
    return [b for b in bufs if b is not None]


def _has_ties(chosen: torch.Tensor) -> bool:
    """Whether some (group, unit) has more than one maximal window."""
    if chosen.numel() < 2**24:  # a float32 sum of fewer than 2^24 ones is exact
        return float(chosen.sum()) > chosen.shape[0] * chosen.shape[2]
    return bool((chosen.sum(dim=1) > 1).any())


def _first_only(chosen: torch.Tensor) -> None:
    """Keep only the first 1.0 along dim 1 where there are several (in place)."""
    g, u = (chosen.sum(dim=1) > 1).nonzero(as_tuple=True)
    tied = chosen[g, :, u]  # (T, M)
    chosen[g, :, u] = tied * (tied.cumsum(dim=1) == 1)


def mean_bce(logits: torch.Tensor, index: WindowIndex) -> torch.Tensor:
    """Mean BCE-with-logits over the N rows, (models,): Σ count·softplus(l) − positives·l, over N; on the CPU
    compiled (``fused.mean_bce``: each model's loss independent of the batch beside it)."""
    if logits.device.type == "cpu":
        from pipeline.capacity import fused

        return torch.from_numpy(fused.mean_bce(logits.detach().numpy(), index))
    per_group = torch.nn.functional.softplus(logits).mul_(index.count).sub_(logits * index.positives)
    return per_group.sum(dim=0).div_(index.n)
