"""The course lab's synthetic 1D task: does the pattern 0, +1, 0 appear in a sequence?

Reproduces the lab's generator bit for bit (legacy numpy stream of ``np.random.seed``),
without touching numpy's global random state.
"""
from __future__ import annotations

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
