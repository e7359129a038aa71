"""The batched 1D detector's SGD epochs as one compiled loop (numba), for the CPU.

``kernel.py`` writes an epoch as about 35 torch ops over (window, unit) matrices; on the CPU
their per-op overhead and memory traffic, not the arithmetic, set the pace (the default
capacity grid: 12,000 epochs of 1-8 filters x 200 seeds). Here the same forward, backward
and momentum step run in one compiled loop, a tile of seeds at a time: a tile's pre-activations,
maxima and routed gradients stay in the L1 cache through all its epochs, and the seeds of a
tile are the vector lanes.

The arithmetic is ``kernel.py``'s rewrite (distinct windows, row groups, the gradient routed to
the first maximal window, as torch's max pool routes a tie), in one fixed order per model:

* z = sum_j x_j t_j over the window's nonzero entries, then + bias; a group's max keeps the
  first maximal window (strict ``>``);
* logit = sum_f relu(max) w_f in filter order, then + the linear bias; d logit = (sigmoid(logit)
  count - positives) / N;
* gradients summed over groups (and slots, windows) in order; the step is ``train.sgd``'s:
  d = g + wd p; buf = m buf + d (buf = d at the first step); p -= lr buf.

Each model's numbers depend only on its own weights and the data: not on the tile, the number
of seeds or the configurations batched beside it, so the capacity stage, the sweep and the
replays of ``diagnose`` get the same bits for a seed however they batch it (``mean_bce`` gives
the loss the same property). Against torch's own training (``pipeline train --seed s``) it
agrees as ``kernel.py`` does: to float64 rounding in float64, to float32 rounding in float32
(tests/capacity/test_kernel.py, test_multiseed.py). Tiles run on as many threads as the caller asks (the
stage's ``--threads``); the bits do not depend on it. Everything here is numpy: no torch is loaded.

numba compiles the loops (``fused_loops.py``) on their first call and caches the machine code beside them (or in
numba's user cache where that is read-only): 10-15 s once per install and dtype on 2 cores
(``make setup`` does it for float32: ``warm``), then about 0.4 s to load per process.
"""
from __future__ import annotations

import numba
import numpy as np

from pipeline.capacity.fused_loops import mean_bce_loop, mt19937_draws, run_epochs, step
from pipeline.capacity.windows import Batch, WindowIndex, host


def mean_bce(logits: np.ndarray, index: WindowIndex) -> np.ndarray:
    """The mean BCE-with-logits over the N rows of logits (G, models), (models,): a model's loss in the same bits
    whatever is beside it (torch's vectorised softplus and column sums round a tensor's last elements
    differently)."""
    x = np.ascontiguousarray(logits)
    out = np.empty(x.shape[1], x.dtype)
    mean_bce_loop(x, np.ascontiguousarray(host(index.count)[:, 0], x.dtype),
                  np.ascontiguousarray(host(index.positives)[:, 0], x.dtype), x.dtype.type(index.n), out)
    return out


def _index_arrays(index: WindowIndex, dtype) -> tuple:
    """A ``WindowIndex`` as run_epochs reads it: windows without the filler row, ids (G, M) with each group's
    number of valid windows (its fillers come last), count and positives (G,), N."""
    windows = host(index.windows)
    P = windows.shape[0] - 1
    ids = host(index.ids).reshape(index.groups, -1).astype(np.int64)
    lengths = (ids != P).sum(axis=1).astype(np.int64)
    return (np.ascontiguousarray(windows[:-1], dtype=dtype), ids, lengths,
            np.ascontiguousarray(host(index.count)[:, 0], dtype=dtype),
            np.ascontiguousarray(host(index.positives)[:, 0], dtype=dtype), dtype.type(index.n))


class _Block:
    """The consecutive models of one filter count F: columns [col, col + S·F) of the (k + 2, U) units
    (unit s·F + f), models [model, model + S); their weights in run_epochs' (k + 2, F, S) layout."""

    def __init__(self, units: np.ndarray, const: np.ndarray, bufs, col: int, model: int, models: int,
                 filters: int):
        self.cols, self.rows, self.F, self.S = slice(col, col + models * filters), slice(model, model + models), \
            filters, models
        self.theta = self._lanes(units)
        self.const = np.ascontiguousarray(const[self.rows])
        self.bufs = self._lanes(bufs[0]) if bufs else np.zeros_like(self.theta)
        self.bufc = np.ascontiguousarray(bufs[1][self.rows]) if bufs else np.zeros_like(self.const)
        self.grad, self.gconst = np.empty_like(self.theta), np.empty_like(self.const)
        self.logits: np.ndarray | None = None

    def _lanes(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, self.cols].reshape(a.shape[0], self.S, self.F).transpose(0, 2, 1))

    def columns(self, a: np.ndarray) -> np.ndarray:
        """(k + 2, F, S) back to the units' (k + 2, S·F) columns."""
        return a.transpose(0, 2, 1).reshape(a.shape[0], self.S * self.F)


def _blocks(units: np.ndarray, const: np.ndarray, batch: Batch, bufs) -> list[_Block]:
    """``batch``'s models split into runs of equal filter count (each model's units are consecutive)."""
    owner = host(batch.model_of_unit)
    if owner.size and bool((owner[1:] < owner[:-1]).any()):
        raise ValueError("the fused trainer needs each model's units consecutive, models in order")
    sizes = np.bincount(owner, minlength=batch.models).tolist()
    blocks, col, start = [], 0, 0
    for m in range(1, batch.models + 1):
        if m == batch.models or sizes[m] != sizes[start]:
            blocks.append(_Block(units, const, bufs, col, start, m - start, sizes[start]))
            col += (m - start) * sizes[start]
            start = m
    return blocks


def sgd_epochs(units: np.ndarray, const: np.ndarray, index: WindowIndex, batch: Batch, *, lr: float,
               momentum: float, weight_decay: float, epochs: int, threads: int, bufs=None, on_epoch=None,
               look_at=None) -> list[np.ndarray]:
    """``multiseed.sgd_epochs``' contract on numpy arrays (in place; returns the momentum buffers; calls
    ``on_epoch(epoch, logits, grad_units, grad_const)`` at the epochs of ``look_at``, every epoch where it is
    None), compiled; the tiles split over ``threads`` threads (the bits do not depend on it)."""
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # thread-local in numba
    dtype = units.dtype
    data = _index_arrays(index, dtype)
    rates = tuple(dtype.type(v) for v in (lr, momentum, weight_decay))
    blocks = _blocks(units, const, batch, bufs)
    first, done = not bufs, 0
    every = range(1, epochs + 1) if look_at is None else look_at
    for epoch in sorted({e for e in every if 1 <= e <= epochs}) if on_epoch is not None else []:
        _run(blocks, first, data, rates, epoch - done, False)  # stops before this epoch's step
        first = first and epoch - done == 1
        _write(units, const, blocks)
        on_epoch(epoch, *_outputs(blocks, units, const))
        for b in blocks:
            step(b.theta, b.bufs, b.const, b.bufc, b.grad, b.gconst, first, *rates)
        first, done = False, epoch
    if done < epochs:
        _run(blocks, first, data, rates, epochs - done, True)
    _write(units, const, blocks)
    if momentum == 0:
        return []
    out = [np.empty_like(units), np.empty_like(const)]
    for b in blocks:
        out[0][:, b.cols] = b.columns(b.bufs)
        out[1][b.rows] = b.bufc
    return out


def logits(units: np.ndarray, const: np.ndarray, index: WindowIndex, batch: Batch) -> np.ndarray:
    """The logits (G, models) of every row group of ``index`` under the weights (units, const): the forward
    pass that trains them, so a score agrees with the training's own (the weights untouched)."""
    data = _index_arrays(index, units.dtype)
    blocks = _blocks(units, const, batch, None)
    _run(blocks, True, data, tuple(units.dtype.type(0) for _ in range(3)), 1, False)
    return np.concatenate([b.logits for b in blocks], axis=1)


def _run(blocks: list[_Block], first: bool, data: tuple, rates: tuple, epochs: int, step_last: bool) -> None:
    for b in blocks:
        b.logits = np.empty((data[1].shape[0], b.S), b.theta.dtype)
        run_epochs(b.theta, b.bufs, b.const, b.bufc, first, *data, *rates, epochs, step_last, b.logits, b.grad,
                   b.gconst)


def _write(units: np.ndarray, const: np.ndarray, blocks: list[_Block]) -> None:
    """The blocks' weights back into the caller's arrays (which the trainer updates in place)."""
    for b in blocks:
        units[:, b.cols] = b.columns(b.theta)
        const[b.rows] = b.const


def _outputs(blocks: list[_Block], units: np.ndarray, const: np.ndarray) -> tuple:
    """(logits (G, models), unit gradients (k + 2, U), const gradients (models,)) of the last pass."""
    grad_units, grad_const = np.empty_like(units), np.empty_like(const)
    for b in blocks:
        grad_units[:, b.cols] = b.columns(b.grad)
        grad_const[b.rows] = b.gconst
    return np.concatenate([b.logits for b in blocks], axis=1), grad_units, grad_const


def warm() -> None:
    """Load the compiled loops (from numba's cache, or compile them) for float32 with one epoch of a one-window
    problem, typed as ``sgd_epochs`` and ``mean_bce`` call them: a stage that will train calls this on a thread
    while it opens its runs; ``make setup`` calls it once to compile."""
    f32, one = np.float32, np.ones(1, np.float32)
    theta, logits = np.zeros((5, 1, 1), f32), np.zeros((1, 1), f32)
    run_epochs(theta, np.zeros_like(theta), np.zeros(1, f32), np.zeros(1, f32), True, np.ones((1, 3), f32),
               np.zeros((1, 1), np.int64), np.ones(1, np.int64), one, one, f32(1), f32(0.1), f32(0.9), f32(0.0), 1,
               True, logits, np.empty_like(theta), np.empty(1, f32))
    mean_bce_loop(logits, one, one, f32(1), np.empty(1, f32))
    mt19937_draws(np.zeros(1, np.int64), np.empty((1, 1), np.uint32))  # initial.initial_weights' draws
