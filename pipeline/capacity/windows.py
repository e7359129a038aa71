"""The 1D data seen through k-wide windows, compressed exactly, in numpy: what both engines of the batched
detector read (``kernel.py``'s torch passes and ``fused.py``'s compiled loop), with the batch layout and the
accuracy of a batch's logits. No torch here: the capacity stage on the CPU trains and scores the grid without
loading torch (its import is 2 CPU-s of the default grid's budget, on 2 cores)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import ConfigError


def host(a: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array, or a torch tensor (any device) as a numpy array on the host; in ``dtype`` when given."""
    if hasattr(a, "detach"):  # a torch tensor: without importing torch for numpy input
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


@dataclass(frozen=True)
class WindowIndex:
    """A binary data set (N, 1, W) seen through k-wide windows, compressed exactly.

    ``build`` gives numpy arrays (float64), which the compiled engine reads; ``to(device, dtype)`` the same index
    as torch tensors, which ``kernel.py``'s passes need."""

    windows: Any  # (P + 1, k) distinct windows (zero padding k//2 each side); last row: filler
    ids: Any  # (G·M,) int64: each group's windows in order of first appearance, then fillers
    groups: int  # G: groups of rows with the same windows in the same order of first appearance
    count: Any  # (G, 1) rows in each group
    positives: Any  # (G, 1) rows with y = 1 in each group
    n: int  # rows in the data set

    @property
    def per_group(self) -> int:
        return self.ids.shape[0] // self.groups

    @classmethod
    def build(cls, X: Any, y: Any, kernel_size: int) -> "WindowIndex":
        X = host(X, np.float64)
        if X.ndim == 3:
            if X.shape[1] != 1:
                raise ConfigError(f"multiseed trains the 1-channel detector; got X of shape {tuple(X.shape)}")
            X = X[:, 0]
        n, width = X.shape
        labels = host(y, np.float64).reshape(-1)
        if labels.shape[0] != n:
            raise ConfigError(f"X has {n} rows but y has {labels.shape[0]}")
        windows = padded_windows(X, kernel_size)  # (N, W, k)
        uniq, inverse = np.unique(windows.reshape(n * width, kernel_size), axis=0, return_inverse=True)
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
        return cls(windows=np.concatenate([uniq, np.zeros((1, kernel_size))]), ids=np.array(ids, dtype=np.int64),
                   groups=len(keys), count=np.array(count)[:, None], positives=np.array(positives)[:, None], n=n)

    @classmethod
    def cached(cls, X: Any, y: Any, kernel_size: int) -> "WindowIndex":
        """``build``, remembered for the last few (data, k): a grid's cells of one k share their data, and
        building costs more than a cell's training (``build`` reads X and y as float64, so does the key).
        The index is shared: nothing may change it in place (the passes only read it)."""
        x, labels = host(X, np.float64), host(y, np.float64)
        return _built(x.tobytes(), x.shape, labels.tobytes(), labels.shape, kernel_size)

    def to(self, device: Any, dtype: Any = None) -> "WindowIndex":
        """The index as torch tensors on ``device`` (``dtype``: float32 when None), for ``kernel.py``'s passes."""
        import torch

        dtype = dtype or torch.float32

        def tensor(a: Any) -> Any:
            return torch.as_tensor(host(a)).to(device, dtype)

        return WindowIndex(tensor(self.windows), torch.as_tensor(host(self.ids)).to(device), self.groups,
                           tensor(self.count), tensor(self.positives), self.n)


def padded_windows(rows: np.ndarray, k: int) -> np.ndarray:
    """The k-wide windows (N, W, k) of rows (N, W), zero-padded k//2 each side, as ``Detector1d``'s convolution
    sees them (a view, not a copy)."""
    return sliding_window_view(np.pad(rows, ((0, 0), (k // 2, k // 2))), k, axis=1)


@functools.lru_cache(maxsize=8)
def _built(x: bytes, x_shape: tuple, labels: bytes, labels_shape: tuple, kernel_size: int) -> WindowIndex:
    X = np.frombuffer(x, dtype=np.float64).reshape(x_shape)
    y = np.frombuffer(labels, dtype=np.float64).reshape(labels_shape)
    return WindowIndex.build(X, y, kernel_size)


@dataclass
class Batch:
    """What the forward and backward passes need to know about the units' layout."""

    k: int
    model_of_unit: Any  # (U,) int64 (numpy, or torch on the passes' device): which model a unit feeds
    models: int  # number of models in the batch

    def to(self, device: Any) -> "Batch":
        """The layout with ``model_of_unit`` as a torch tensor on ``device``, for ``kernel.py``'s passes."""
        import torch

        return Batch(self.k, torch.as_tensor(host(self.model_of_unit)).to(device), self.models)


def accuracy(logits: Any, index: WindowIndex) -> np.ndarray:
    """Share of rows with (logit > 0) == y, (models,) float64, of logits (G, models) in numpy or torch: a count
    over N, as in `train`."""
    logits = host(logits)
    pred = (logits > 0).astype(logits.dtype)
    count, positives = host(index.count, logits.dtype), host(index.positives, logits.dtype)
    correct = pred * positives + (1 - pred) * (count - positives)
    return np.rint(correct.sum(axis=0).astype(np.float64)) / index.n
