"""Image data files written by the tests (no downloads): IDX folders, torchvision layouts, CIFAR batches."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pipeline.data.formats import write_idx


def fake_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose label is readable from the pixels (row `label` is bright): learnable, checkable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    X = rng.integers(0, 50, size=(n, 28, 28), dtype=np.uint8)
    X[np.arange(n), y, :] = 255
    return X, y


def write_mnist_folder(folder: Path, n_train: int | None, n_test: int | None, gz: bool = False) -> Path:
    """The four (or two) MNIST IDX files in ``folder``; for a torchvision root use root/MNIST/raw."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        if n is not None:
            X, y = fake_images(n, seed=seed)
            write_idx(folder / f"{split}-images-idx3-ubyte{ext}", X)
            write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", y)
    return folder


def write_cifar_folder(root: Path, n_per_batch: int = 20, truncate: str | None = None) -> Path:
    """CIFAR-10's python batches under root/cifar-10-batches-py (``truncate``: cut that file in half)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, size=n_per_batch).tolist(), "batch_label": name}
        raw = pickle.dumps(entry)
        (folder / name).write_bytes(raw[: len(raw) // 2] if name == truncate else raw)
    return root
