"""File formats of image data sets, read into numpy arrays: IDX (MNIST's, optionally gzip'd),
the labs' ``.npz`` files, CIFAR-10's pickled batches, and scikit-learn's bundled 8x8 digits.

Every reader checks what it reads and names the file and the fault in one line (truncated,
damaged, wrong shape or type) instead of failing later inside torch.
"""
from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

Arrays = tuple[np.ndarray, np.ndarray]  # X (N, C, H, W), y (N,) int64

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


# --------------------------------------------------------------------------- CIFAR-10 batches
def read_cifar_batch(path: Path) -> Arrays:
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


# --------------------------------------------------------------------------- digits
def load_digits_arrays() -> Arrays:
    """scikit-learn's 1,797 real 8x8 digits (values 0..16), scaled to float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    return X, digits.target.astype(np.int64)
