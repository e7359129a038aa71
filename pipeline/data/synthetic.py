"""The course lab's synthetic 1D task: does the pattern 0, +1, 0 appear in a sequence?

Reproduces the lab's generator bit for bit (legacy numpy stream of ``np.random.seed``),
without touching numpy's global random state (``synthetic_arrays``; ``make_synthetic`` as torch tensors).
``distribution`` lists every sequence the generator can make at a width, with its probability (as tensors:
``enumerate_synthetic``): the input space is so small (148 sequences
at width 20) that accuracies over the whole distribution are computed exactly, not sampled.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config.checks import fits_in_memory

if TYPE_CHECKING:
    import torch

VALUES = [-1.0, -0.5, 0.5, 1.0]


def make_synthetic(n: int = 75, width: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X (n, 1, width) float32 with one short bump per row; y (n, 1) float32, 1 iff bump is a lone +1."""
    import torch

    X, y = synthetic_arrays(n, width, seed)
    return torch.from_numpy(X), torch.from_numpy(y)


def synthetic_arrays(n: int = 75, width: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``make_synthetic``'s data as numpy arrays (what the capacity stage trains on, without torch)."""
    fits_in_memory(4.0 * n * (width + 1), f"the synthetic data (--n {n} x --width {width})",
                   "use a smaller --n or --width")
    rng = np.random.RandomState(seed)  # same stream as np.random.seed(seed) in the lab
    X = np.zeros((n, 1, width), dtype=np.float32)
    y = np.zeros((n, 1), dtype=np.float32)
    for i in range(n):
        size = rng.randint(1, 3)  # 1 or 2
        start = rng.randint(0, width - size)
        value = rng.choice(VALUES)
        X[i, 0, start : start + size] = value
        y[i] = 1 if size == 1 and value == 1 else 0
    return X, y


@dataclass(frozen=True)
class Distribution:
    """Every distinct sequence of ``make_synthetic`` at one width, with the probability of drawing it: numpy
    arrays (``distribution``) or torch tensors (``enumerate_synthetic``); the methods take the same kind."""

    X: Any  # (M, 1, W) float32, M = 4·(W−1) + 4·(W−2)
    y: Any  # (M, 1) float32
    p: Any  # (M,) float64, sums to 1

    def matches(self, X: Any) -> Any:
        """(N, M) bool: row n of X (N, 1, W) is sequence m."""
        return (X.reshape(len(X), 1, -1) == self.X.reshape(1, len(self.X), -1)).all(-1)

    def seen(self, X: Any) -> Any:
        """(M,) bool: which sequences occur among the rows of X (N, 1, W)."""
        return self.matches(X).any(0)

    def repeats(self, X: Any, seen: Any) -> int:
        """How many rows of X (N, 1, W) are one of the ``seen`` (M,) sequences."""
        return int(self.matches(X)[:, seen].any(1).sum())

    def accuracies(self, correct: Any, seen: Any) -> tuple[Any, Any]:
        """``correct`` (..., M) bool -> (exact, unseen), each (...,): the accuracy weighted by ``p``, and the
        same renormalised over the sequences not ``seen`` (M,) (nan where every sequence was seen); numpy
        float64 sums for either kind, so that torch's model and the capacity study's numpy scoring agree."""
        right, p = np.asarray(correct, dtype=np.float64), np.asarray(self.p)
        unseen = p * ~np.asarray(seen)
        with np.errstate(invalid="ignore"):  # 0/0 where every sequence was seen: nan, as documented
            return right @ p, (right @ unseen) / unseen.sum()


@functools.lru_cache(maxsize=8)
def distribution(width: int = 20) -> Distribution:
    """The distribution of ``make_synthetic(…, width, …)`` as numpy arrays: bump size 1 or 2 (½ each), start
    uniform in [0, W − size), value uniform in VALUES, so each sequence has probability ½ · 1/(W − size) · ¼."""
    rows, labels, probs = [], [], []
    for size in (1, 2):
        for start in range(width - size):
            for value in VALUES:
                x = np.zeros(width, dtype=np.float32)
                x[start : start + size] = value
                rows.append(x)
                labels.append(float(size == 1 and value == 1))
                probs.append(0.5 / (width - size) / len(VALUES))
    return Distribution(np.stack(rows)[:, None], np.array(labels, dtype=np.float32)[:, None],
                        np.array(probs, dtype=np.float64))


@functools.lru_cache(maxsize=8)
def enumerate_synthetic(width: int = 20) -> Distribution:
    """``distribution(width)`` as torch tensors."""
    import torch

    dist = distribution(width)
    return Distribution(*(torch.from_numpy(a.copy()) for a in (dist.X, dist.y, dist.p)))  # not the cache's memory
