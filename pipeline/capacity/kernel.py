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

Used by ``multiseed.py``, which owns the initial weights, the SGD step and the results: these
torch passes are its engine off the CPU (and the forward is how the diagnosis looks at weights);
on the CPU ``fused.py`` runs the same rewrite as one compiled loop, 2.7x faster on one thread
over the default grid.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import ConfigError


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class WindowIndex:
    """A binary data set (N, 1, W) seen through k-wide windows, compressed exactly."""

    windows: torch.Tensor  # (P + 1, k) distinct windows (zero padding k//2 each side); last row: filler
    ids: torch.Tensor  # (G·M,) int64: each group's windows in order of first appearance, then fillers
    groups: int  # G: groups of rows with the same windows in the same order of first appearance
    count: torch.Tensor  # (G, 1) rows in each group
    positives: torch.Tensor  # (G, 1) rows with y = 1 in each group
    n: int  # rows in the data set

    @property
    def per_group(self) -> int:
        return self.ids.shape[0] // self.groups

    @classmethod
    def build(cls, X: torch.Tensor, y: torch.Tensor, kernel_size: int) -> "WindowIndex":
        X = torch.as_tensor(X).detach().to(device="cpu", dtype=torch.float64)
        if X.dim() == 3:
            if X.shape[1] != 1:
                raise ConfigError(f"multiseed trains the 1-channel detector; got X of shape {tuple(X.shape)}")
            X = X[:, 0]
        n, width = X.shape
        labels = torch.as_tensor(y).reshape(-1).double().cpu().numpy()
        if labels.shape[0] != n:
            raise ConfigError(f"X has {n} rows but y has {labels.shape[0]}")
        pad = kernel_size // 2
        windows = torch.nn.functional.pad(X, (pad, pad)).unfold(1, kernel_size, 1)  # (N, W, k)
        uniq, inverse = np.unique(windows.reshape(n * width, kernel_size).numpy(), axis=0, return_inverse=True)
        inverse = inverse.reshape(n, width)
        filler = len(uniq)  # a window whose pre-activation is -inf: never the max
        keys: dict[tuple[int, ...], int] = {}
        count, positives = [], []
        for i in range(n):
            key = tuple(dict.fromkeys(inverse[i].tolist()))  # distinct windows, first appearance first
            g = keys.setdefault(key, len(keys))
            if g == len(count):
                count.append(0.0)
                positives.append(0.0)
            count[g] += 1.0
            positives[g] += float(labels[i])
        m = max(len(key) for key in keys)
        ids = [w for key in keys for w in (*key, *[filler] * (m - len(key)))]
        table = np.concatenate([uniq, np.zeros((1, kernel_size))])
        ids = torch.tensor(ids, dtype=torch.int64)
        return cls(
            windows=torch.from_numpy(table),
            ids=ids,
            groups=len(keys),
            count=torch.tensor(count, dtype=torch.float64).unsqueeze(1),
            positives=torch.tensor(positives, dtype=torch.float64).unsqueeze(1),
            n=n,
        )

    @classmethod
    def cached(cls, X: torch.Tensor, y: torch.Tensor, kernel_size: int) -> "WindowIndex":
        """``build``, remembered for the last few (data, k): a grid's cells of one k share their data, and
        building costs more than a cell's training (``build`` reads X and y as float64, so does the key).
        The index is shared: nothing may change it in place (the passes here only read it)."""
        x = torch.as_tensor(X).detach().to(device="cpu", dtype=torch.float64).numpy()
        labels = torch.as_tensor(y).detach().to(device="cpu", dtype=torch.float64).numpy()
        return _built(x.tobytes(), x.shape, labels.tobytes(), labels.shape, kernel_size)

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> "WindowIndex":
        return WindowIndex(self.windows.to(device, dtype), self.ids.to(device), self.groups,
                           self.count.to(device, dtype), self.positives.to(device, dtype), self.n)


@functools.lru_cache(maxsize=8)
def _built(x: bytes, x_shape: tuple, labels: bytes, labels_shape: tuple, kernel_size: int) -> WindowIndex:
    X = torch.from_numpy(np.frombuffer(x, dtype=np.float64).reshape(x_shape).copy())
    y = torch.from_numpy(np.frombuffer(labels, dtype=np.float64).reshape(labels_shape).copy())
    return WindowIndex.build(X, y, kernel_size)


# --------------------------------------------------------------------------- forward/backward
@dataclass
class Batch:
    """What the forward and backward passes need to know about the units' layout."""

    k: int
    model_of_unit: torch.Tensor  # (U,) int64: which model (column of the logits) a unit feeds
    models: int  # number of models in the batch


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

        return fused.mean_bce(logits, index.count, index.positives, index.n)
    per_group = torch.nn.functional.softplus(logits).mul_(index.count).sub_(logits * index.positives)
    return per_group.sum(dim=0).div_(index.n)


def accuracy(logits: torch.Tensor, index: WindowIndex) -> np.ndarray:
    """Share of rows with (logit > 0) == y, (models,) float64: a count over N, as in `train`."""
    pred = (logits > 0).to(logits.dtype)
    correct = pred * index.positives + (1 - pred) * (index.count - index.positives)
    return np.rint(correct.sum(dim=0).cpu().numpy().astype(np.float64)) / index.n
