"""Data on a device, and minibatches that are index permutations of it.

A split lives as tensors (on the GPU when it fits); minibatches are gathered a chunk at a
time: no DataLoader, no per-sample Python. Used by training, evaluation and the input
pipeline benchmark.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from pipeline.errors import ConfigError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(name)


def place(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A whole split on ``device`` when it fits in half its free memory; else it stays on the host."""
    if device.type != "cuda" or t.device == device:
        return t.to(device)
    free, _ = torch.cuda.mem_get_info(device)
    return t.to(device) if t.numel() * t.element_size() < free // 2 else t


CHUNK_BYTES = 4 << 20  # model input prepared at once: a few tensor ops per chunk, none per minibatch;
# big enough to amortise per-op costs, small enough to stay in cache and reuse freed memory (no page faults)


def minibatches(X: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                transform: Callable[[torch.Tensor], torch.Tensor], order: torch.Tensor | None = None,
                max_batches: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) minibatches of a split stored as tensors, in ``order`` (None: as stored).

    Minibatch b holds rows ``order[b*bs:(b+1)*bs]``; ``order`` may be longer than X and repeat
    rows (the multi-seed trainer interleaves every seed's order). Rows are gathered, moved and converted
    (``transform``) a chunk of many minibatches at a time, and each minibatch is a view of
    its chunk: per-op overheads (kernel launches, thread-pool wake-ups) are paid per
    chunk, never per sample as with a DataLoader, and not even per minibatch.
    """
    n = X.shape[0] if order is None else order.shape[0]
    if batch_size >= n and order is None and not max_batches:  # full batch: the split itself
        yield transform(X.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        return
    if max_batches:
        n = min(n, max_batches * batch_size)
    row_bytes = 4 * max(1, X[0].numel())  # as float32 model input
    chunk = max(1, CHUNK_BYTES // (row_bytes * batch_size)) * batch_size
    for c in range(0, n, chunk):
        rows = slice(c, min(c + chunk, n))
        if order is None:
            Xc, yc = X[rows], y[rows]
        else:
            idx = order[rows]
            Xc, yc = X.index_select(0, idx), y.index_select(0, idx)
        Xc, yc = transform(Xc.to(device, non_blocking=True)), yc.to(device, non_blocking=True)
        for i in range(0, Xc.shape[0], batch_size):
            yield Xc[i : i + batch_size], yc[i : i + batch_size]
