"""The course lab's synthetic 1D task: does the pattern 0, +1, 0 appear in a sequence?

Reproduces the lab's generator bit for bit (legacy numpy stream of ``np.random.seed``),
without touching numpy's global random state. ``enumerate_synthetic`` lists every sequence the
generator can make at a width, with its probability: the input space is so small (148 sequences
at width 20) that accuracies over the whole distribution are computed exactly, not sampled.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config.checks import fits_in_memory

VALUES = [-1.0, -0.5, 0.5, 1.0]


def make_synthetic(n: int = 75, width: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X (n, 1, width) float32 with one short bump per row; y (n, 1) float32, 1 iff bump is a lone +1."""
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
    return torch.from_numpy(X), torch.from_numpy(y)


@dataclass(frozen=True)
class Distribution:
    """Every distinct sequence of ``make_synthetic`` at one width, with the probability of drawing it."""

    X: torch.Tensor  # (M, 1, W) float32, M = 4·(W−1) + 4·(W−2)
    y: torch.Tensor  # (M, 1) float32
    p: torch.Tensor  # (M,) float64, sums to 1

    def matches(self, X: torch.Tensor) -> torch.Tensor:
        """(N, M) bool: row n of X (N, 1, W) is sequence m."""
        return (X.reshape(len(X), 1, -1) == self.X.reshape(1, len(self.X), -1)).all(-1)

    def seen(self, X: torch.Tensor) -> torch.Tensor:
        """(M,) bool: which sequences occur among the rows of X (N, 1, W)."""
        return self.matches(X).any(0)

    def repeats(self, X: torch.Tensor, seen: torch.Tensor) -> int:
        """How many rows of X (N, 1, W) are one of the ``seen`` (M,) sequences."""
        return int(self.matches(X)[:, seen].any(1).sum())

    def accuracies(self, correct: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``correct`` (..., M) bool -> (exact, unseen), each (...,): the accuracy weighted by ``p``, and the
        same renormalised over the sequences not ``seen`` (M,) (nan where every sequence was seen)."""
        right = correct.to(torch.float64)
        unseen = self.p * ~seen
        return right @ self.p, (right @ unseen) / unseen.sum()


@functools.lru_cache(maxsize=8)
def enumerate_synthetic(width: int = 20) -> Distribution:
    """The distribution of ``make_synthetic(…, width, …)``: bump size 1 or 2 (½ each), start uniform in
    [0, W − size), value uniform in VALUES, so each sequence has probability ½ · 1/(W − size) · ¼."""
    rows, labels, probs = [], [], []
    for size in (1, 2):
        for start in range(width - size):
            for value in VALUES:
                x = np.zeros(width, dtype=np.float32)
                x[start : start + size] = value
                rows.append(x)
                labels.append(float(size == 1 and value == 1))
                probs.append(0.5 / (width - size) / len(VALUES))
    X = torch.from_numpy(np.stack(rows)).unsqueeze(1)
    return Distribution(X, torch.tensor(labels, dtype=torch.float32).unsqueeze(1),
                        torch.tensor(probs, dtype=torch.float64))
