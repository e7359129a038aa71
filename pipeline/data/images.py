"""Image data sets as tensors: MNIST, FashionMNIST and CIFAR-10 (torchvision's folders and
downloads), scikit-learn's 8x8 digits, the labs' ``.npz`` files and folders of IDX files.

No PIL and no per-sample transforms: each split is one tensor (N, C, H, W) of uint8 pixels
(float in [0, 1] for digits), converted to the model's input a minibatch at a time
(``DataBundle.input_transform``). Where a source has no test split of its own (digits,
``.npz``, an IDX folder with one split) a seeded share is held out as the test split;
the validation split is always a seeded share of the training images.
"""
from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import FALLBACKS, ConfigError
from pipeline.data.bundle import DataBundle, Split

Arrays = tuple[np.ndarray, np.ndarray]  # X (N, C, H, W), y (N,) int64

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

# --------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_NAMES = {  # split -> (images, labels), as LeCun's files and torchvision's raw/ folder name them
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzip'd) as an array of the shape its header gives."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ConfigError(f"{path}: cannot read ({err.__class__.__name__}: {err}); the file is truncated "
                          f"or damaged") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"{path}: truncated IDX file: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[raw[2]]
    count = int(np.prod(dims, dtype=np.int64))
    need, have = count * dtype.itemsize, len(raw) - header
    if have != need:
        what = "truncated IDX file" if have < need else "IDX file with trailing bytes"
        raise ConfigError(f"{path}: {what}: header says {'x'.join(map(str, dims))} {dtype.name} "
                          f"({need:,} bytes of data), found {have:,}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip'd when the name ends in .gz): the inverse of ``read_idx``."""
    path = Path(path)
    array = np.asarray(array)
    code = {v.newbyteorder(">") if v.itemsize > 1 else v: k for k, v in _IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in code:
        raise ValueError(f"IDX cannot hold {array.dtype}")
    header = bytes([0, 0, code[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.suffix == ".gz" else raw)
    return path


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx_pair(folder: Path, split: str) -> Arrays | None:
    """(X (N, 1, H, W) uint8, y (N,) int64) of one split in ``folder``, or None if it is not there."""
    img_name, lbl_name = IDX_NAMES[split]
    img, lbl = _find(folder, img_name), _find(folder, lbl_name)
    if img is None and lbl is None:
        return None
    if img is None or lbl is None:
        missing = img_name if img is None else lbl_name
        raise ConfigError(f"{folder}: has the {split} {'labels' if img is None else 'images'} but not "
                          f"{missing}[.gz]")
    X, y = read_idx(img), read_idx(lbl)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ConfigError(f"{img}: expected uint8 images (N, H, W), got {X.dtype} of shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ConfigError(f"{lbl}: expected {len(X)} labels for the {len(X)} images of {img.name}, got shape "
                          f"{y.shape}")
    return X[:, None], y.astype(np.int64)


def has_idx_files(folder: Path) -> bool:
    return folder.is_dir() and any(_find(folder, n) for pair in IDX_NAMES.values() for n in pair)


def load_idx_folder(folder: Path) -> dict[str, Arrays]:
    """The train and/or test split of a folder of IDX files (such as ../shared/data/mnist)."""
    parts = {split: pair for split in IDX_NAMES if (pair := read_idx_pair(folder, split)) is not None}
    if not parts:
        names = ", ".join(f"{n}[.gz]" for pair in IDX_NAMES.values() for n in pair)
        raise ConfigError(f"{folder}: no IDX files (expected {names})")
    return parts


# --------------------------------------------------------------------------- .npz
def load_npz(path: Path) -> Arrays:
    """The labs' format: ``X`` uint8 (N, 28, 28) or (N, 784), ``y`` N integer labels."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such .npz file (give --data-dir path/to/file.npz)")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = sorted(f.files)
            if "X" not in keys or "y" not in keys:
                raise ConfigError(f"{path}: needs arrays 'X' (uint8, (N, 28, 28) or (N, 784)) and 'y' "
                                  f"(N labels); found keys {keys}")
            X, y = f["X"], f["y"]
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ConfigError(f"{path}: not a readable .npz file, truncated or damaged "
                          f"({err.__class__.__name__}: {str(err).splitlines()[0]})") from None
    if X.dtype != np.uint8:
        raise ConfigError(f"{path}: X must be uint8 pixels 0..255, got {X.dtype}")
    if X.ndim == 2 and X.shape[1] == 784:
        X = X.reshape(-1, 28, 28)
    if X.ndim != 3 or X.shape[1:] != (28, 28):
        raise ConfigError(f"{path}: X has shape {X.shape}; expected (N, 28, 28) or (N, 784)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X) or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{path}: y must be {len(X)} integer labels (one per image), got {y.dtype} of shape "
                          f"{y.shape}")
    if len(y) and y.min() < 0:
        raise ConfigError(f"{path}: labels must be >= 0, found {int(y.min())}")
    return X[:, None], y.astype(np.int64)


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
    except Exception as err:  # noqa: BLE001 - network and archive errors of many kinds
        reason = " ".join(str(err).split())[:300]  # torchvision puts the cause on a second line
        raise ConfigError(f"--download {dataset} into {root} failed: {reason}") from None


def _read_cifar_batch(path: Path) -> Arrays:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # noqa: S301 - the CIFAR-10 format is a pickle
        data, labels = entry["data"], entry.get("labels", entry.get("fine_labels"))
        X = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: not a CIFAR-10 batch, truncated or damaged "
                          f"({err.__class__.__name__}: {str(err).splitlines()[0]})") from None
    if len(y) != len(X):
        raise ConfigError(f"{path}: {len(X)} images but {len(y)} labels")
    return X, y


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
        train = [_read_cifar_batch(p) for p in files[:-1]]
        return {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
                "test": _read_cifar_batch(files[-1])}
    return load_idx_folder(files[0].parent)


def load_digits_arrays() -> Arrays:
    """scikit-learn's 1,797 real 8x8 digits (values 0..16), scaled to float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    return X, digits.target.astype(np.int64)


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
