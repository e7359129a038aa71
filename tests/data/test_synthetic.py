"""The synthetic data set reproduces the lab's generator bit for bit."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.data.synthetic import make_synthetic


def lab_generator(n=75, width=20, seed=0):
    """The lab's code, verbatim (global numpy state)."""
    np.random.seed(seed)
    X = np.zeros((n, 1, width), dtype=np.float32)
    y = np.zeros((n, 1), dtype=np.float32)
    for i in range(n):
        size = np.random.randint(1, 3)
        start = np.random.randint(0, width - size)
        value = np.random.choice([-1.0, -0.5, 0.5, 1.0])
        X[i, 0, start : start + size] = value
        y[i] = 1 if size == 1 and value == 1 else 0
    return X, y


def test_seed0_matches_the_documented_facts():
    X, y = make_synthetic(75, 20, 0)
    assert X.shape == (75, 1, 20) and y.shape == (75, 1)
    assert X.dtype == torch.float32 and y.dtype == torch.float32
    assert torch.nonzero(y[:, 0]).ravel().tolist() == [1, 9, 11, 12, 20, 29, 52, 53, 55, 56, 66]
    assert float(X.sum()) == 7.5


def test_matches_the_lab_code_for_other_sizes_and_seeds():
    for n, width, seed in [(75, 20, 0), (40, 12, 3), (200, 30, 17)]:
        X, y = make_synthetic(n, width, seed)
        Xl, yl = lab_generator(n, width, seed)
        assert np.array_equal(X.numpy(), Xl) and np.array_equal(y.numpy(), yl)


def test_does_not_touch_global_numpy_state():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    make_synthetic(10, 20, 0)
    assert np.random.rand() == expected


def test_held_out_seeds_give_other_data():
    X0, _ = make_synthetic(75, 20, 0)
    X1, _ = make_synthetic(75, 20, 1)
    assert not torch.equal(X0, X1)
