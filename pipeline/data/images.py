"""Image data sets as tensors: MNIST, FashionMNIST and CIFAR-10 (torchvision's folders and
downloads), scikit-learn's 8x8 digits, the labs' ``.npz`` files and folders of IDX files.

No PIL and no per-sample transforms: each split is one tensor (N, C, H, W) of uint8 pixels
(float in [0, 1] for digits), converted to the model's input a minibatch at a time
(``DataBundle.input_transform``). Where a source has no test split of its own (digits,
``.npz``, an IDX folder with one split) a seeded share is held out as the test split;
the validation split is always a seeded share of the training images.
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config.recipes import FALLBACKS
from pipeline.data.bundle import DataBundle, Split
from pipeline.data.formats import (
    IDX_NAMES,
    Arrays,
    has_idx_files,
    load_digits_arrays,
    load_idx_folder,
    load_npz,
    read_cifar_batch,
)
from pipeline.errors import ConfigError

DIGITS = tuple(str(i) for i in range(10))
CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": DIGITS,
    "digits": DIGITS,
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}  # torchvision class
IMAGE_DATASETS = {"digits", "npz", "idx", *TORCHVISION}


# --------------------------------------------------------------------------- torchvision folders
def _torchvision_class(dataset: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, TORCHVISION[dataset])


def expected_files(dataset: str, root: Path) -> list[Path]:
    """The files that torchvision's folder layout holds for ``dataset`` under ``root``."""
    if dataset == "cifar10":
        folder = root / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        return [folder / n for n in names]
    folder = root / TORCHVISION[dataset] / "raw"
    return [folder / n for pair in IDX_NAMES.values() for n in pair]


def _download(dataset: str, root: Path) -> None:
    try:
        _torchvision_class(dataset)(str(root), train=True, download=True)
    except (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, zipfile.BadZipFile) as err:
        # OSError: the network (URLError) or the disk; RuntimeError: torchvision's "not found or corrupted"
        reason = " ".join(str(err).split())[:300]  # torchvision puts the cause on a second line
        raise ConfigError(f"--download {dataset} into {root} failed: {reason}") from None


def load_torchvision(dataset: str, root: Path, download: bool = False) -> dict[str, Arrays]:
    """Train and test split of MNIST / FashionMNIST / CIFAR-10 in torchvision's layout under ``root``."""
    files = expected_files(dataset, root)
    missing = [p for p in files if not p.exists() and not p.with_name(p.name + ".gz").exists()]
    if missing and download:
        _download(dataset, root)
        missing = [p for p in files if not p.exists()]
    if missing:
        raise ConfigError(
            f"{dataset}: {len(missing)} of its {len(files)} files are missing in {files[0].parent} "
            f"(expected {', '.join(p.name for p in files)}); pass --download to fetch them, or --data-dir "
            f"pointing at a torchvision root, a folder of IDX files or an .npz file"
        )
    if dataset == "cifar10":
        train = [read_cifar_batch(p) for p in files[:-1]]
        return {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
                "test": read_cifar_batch(files[-1])}
    return load_idx_folder(files[0].parent)


# --------------------------------------------------------------------------- bundle
def source_of(dataset: str, data_dir: Path) -> str:
    """Where the images come from: digits, an .npz file, an IDX folder, or a torchvision root."""
    if dataset == "digits":
        return "digits"
    if dataset == "npz" or data_dir.suffix == ".npz":
        return "npz"
    if dataset == "idx" or has_idx_files(data_dir):
        return "idx"
    return "torchvision"


def load_parts(dataset: str, source: str, data_dir: Path, download: bool) -> dict[str, Arrays]:
    if source == "digits":
        return {"train": load_digits_arrays()}
    if source == "npz":
        return {"train": load_npz(data_dir)}
    if source == "idx":
        if not data_dir.is_dir():
            raise ConfigError(f"{data_dir}: no such folder of IDX files")
        parts = load_idx_folder(data_dir)
        return parts if "train" in parts else {"train": parts["test"]}  # one split: hold out its own test
    return load_torchvision(dataset, data_dir, download)


def _carve(X: torch.Tensor, y: torch.Tensor, fraction: float, gen: torch.Generator, what: str):
    """(held-out, rest) splits: a seeded ``fraction`` of the rows, each part in file order."""
    n = len(X)
    k = int(round(n * fraction))
    if not 0 < k < n:
        raise ConfigError(f"{n} images are too few to hold out {fraction:g} of them as the {what} split")
    perm = torch.randperm(n, generator=gen)
    held, rest = perm[:k].sort().values, perm[k:].sort().values
    return Split(X[held], y[held]), Split(X[rest], y[rest])


def channel_stats(X: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of model inputs (pixels in [0, 1]) over (N, H, W)."""
    x = X.double() / 255 if X.dtype == torch.uint8 else X.double()
    dims = (0, *range(2, x.ndim))
    std = x.std(dim=dims)
    return x.mean(dim=dims).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist()


def image_bundle(cfg: Any) -> DataBundle:
    """Train / validation / test splits of the image data set that a resolved config names."""
    dataset = cfg.dataset
    data_dir = Path(cfg.data_dir or FALLBACKS["data_dir"]).expanduser()
    source = source_of(dataset, data_dir)
    parts = load_parts(dataset, source, data_dir, bool(cfg.download))
    gen = torch.Generator().manual_seed(int(cfg.split_seed))
    X, y = (torch.from_numpy(np.array(a)) for a in parts["train"])  # copies: frombuffer arrays are read-only
    if "test" in parts:
        test = Split(*(torch.from_numpy(np.array(a)) for a in parts["test"]))
        test_from = "file"
    else:
        test, rest = _carve(X, y, cfg.test_fraction, gen, "test")
        X, y = rest.X, rest.y
        test_from = f"held out ({cfg.test_fraction:g}, split seed {cfg.split_seed})"
    val, train = _carve(X, y, cfg.val_fraction, gen, "validation")

    n_labels = int(max(int(s.y.max()) for s in (train, val, test))) + 1
    classes = CLASSES.get(dataset, tuple(str(i) for i in range(max(n_labels, 2))))
    if n_labels > len(classes):
        raise ConfigError(f"{dataset}: labels go up to {n_labels - 1}, but {dataset} has {len(classes)} classes")
    meta: dict[str, Any] = {"source": source, "data_dir": None if source == "digits" else str(data_dir),
                            "split_seed": int(cfg.split_seed), "val_fraction": cfg.val_fraction,
                            "test_from": test_from, "normalize": cfg.normalize, "mean": None, "std": None}
    if cfg.normalize == "standard":
        meta["mean"], meta["std"] = channel_stats(train.X)
    return DataBundle(name=dataset, task="multiclass", train=train, val=val, classes=classes, meta=meta, test=test)
