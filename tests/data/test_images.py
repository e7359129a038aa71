"""Image loaders on files that the tests write: IDX (plain and gzip'd), .npz, torchvision folders, digits."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import DataBundle
from pipeline.data.formats import load_npz, read_idx, write_idx
from pipeline.data.images import load_torchvision
from pipeline.data.load import load_bundle
from pipeline.errors import ConfigError

from imagefiles import fake_images, write_cifar_folder, write_mnist_folder


def cfg(**kw) -> TrainConfig:
    return resolve(TrainConfig(**kw))


# --------------------------------------------------------------------------- IDX
def test_idx_round_trip_plain_and_gzip(tmp_path):
    X, y = fake_images(7)
    for name in ("img.idx", "img.idx.gz"):
        assert np.array_equal(read_idx(write_idx(tmp_path / name, X)), X)
    assert np.array_equal(read_idx(write_idx(tmp_path / "lbl.idx", y)), y)
    head = (tmp_path / "img.idx").read_bytes()[:16]
    assert head == bytes([0, 0, 8, 3]) + (7).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2  # LeCun's layout


def test_truncated_idx_gets_a_clear_error(tmp_path):
    X, _ = fake_images(10)
    raw = write_idx(tmp_path / "train-images-idx3-ubyte", X).read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-100])
    with pytest.raises(ConfigError, match=r"cut: truncated IDX file: header says 10x28x28 uint8 "
                                          r"\(7,840 bytes of data\), found 7,740"):
        read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-30])
    with pytest.raises(ConfigError, match="cut.gz: cannot read .*truncated or damaged"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "header").write_bytes(raw[:9])
    with pytest.raises(ConfigError, match="shorter than its 16-byte header"):
        read_idx(tmp_path / "header")
    (tmp_path / "text").write_text("hello, not IDX")
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_idx_folder_with_only_the_test_split_is_split_three_ways(tmp_path):
    write_mnist_folder(tmp_path / "mnist", None, 1000, gz=True)  # like ../shared/data/mnist
    b = load_bundle(cfg(dataset="mnist", data_dir=str(tmp_path / "mnist")))
    assert (len(b.train), len(b.val), len(b.test)) == (720, 80, 200)
    assert b.meta["source"] == "idx" and b.meta["test_from"].startswith("held out")
    assert b.train.X.shape[1:] == (1, 28, 28) and b.train.X.dtype == torch.uint8 and b.train.y.dtype == torch.int64
    everything = torch.cat([b.train.X, b.val.X, b.test.X]).reshape(1000, -1)
    assert torch.unique(everything, dim=0).shape[0] == 1000  # disjoint: no image in two splits
    for split in (b.train, b.val, b.test):  # labels still match their images (bright row = label)
        bright = split.X[:, 0].float().mean(dim=2).argmax(dim=1)
        assert torch.equal(bright, split.y)
    again = load_bundle(cfg(dataset="mnist", data_dir=str(tmp_path / "mnist")))
    assert torch.equal(again.test.X, b.test.X)  # seeded
    other = load_bundle(cfg(dataset="mnist", data_dir=str(tmp_path / "mnist"), split_seed=1))
    assert not torch.equal(other.test.X, b.test.X)


def test_idx_folder_with_both_splits_keeps_the_official_test_split(tmp_path):
    write_mnist_folder(tmp_path, 300, 50)
    b = load_bundle(cfg(dataset="idx", data_dir=str(tmp_path)))
    assert (len(b.train), len(b.val), len(b.test)) == (270, 30, 50)
    assert np.array_equal(b.test.X[:, 0].numpy(), read_idx(tmp_path / "t10k-images-idx3-ubyte"))
    assert b.meta["test_from"] == "file"


# --------------------------------------------------------------------------- torchvision folders
def test_torchvision_mnist_folder_written_by_the_test(tmp_path):
    write_mnist_folder(tmp_path / "FashionMNIST" / "raw", 200, 40)
    b = load_bundle(cfg(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert b.name == "fashion-mnist" and b.meta["source"] == "torchvision"
    assert b.classes[0] == "T-shirt/top" and len(b.classes) == 10
    assert (len(b.train), len(b.val), len(b.test)) == (180, 20, 40)
    # the same files through torchvision's own class: our reader agrees with it
    from torchvision.datasets import FashionMNIST

    tv = FashionMNIST(str(tmp_path), train=False)
    assert torch.equal(tv.data, b.test.X[:, 0]) and torch.equal(tv.targets, b.test.y)


def test_torchvision_cifar_folder_written_by_the_test(tmp_path):
    write_cifar_folder(tmp_path)
    b = load_bundle(cfg(recipe="cifar-lenet", data_dir=str(tmp_path)))
    assert b.input_shape == (3, 32, 32) and b.train.X.dtype == torch.uint8
    assert (len(b.train), len(b.val), len(b.test)) == (90, 10, 20)
    assert b.classes[0] == "airplane"
    entry = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert np.array_equal(b.test.X.numpy(), entry["data"].reshape(-1, 3, 32, 32))  # channels first


def test_truncated_cifar_batch_and_missing_files(tmp_path):
    write_cifar_folder(tmp_path / "a", truncate="data_batch_3")
    with pytest.raises(ConfigError, match="data_batch_3: not a CIFAR-10 batch, truncated or damaged"):
        load_torchvision("cifar10", tmp_path / "a")
    with pytest.raises(ConfigError) as err:
        load_torchvision("mnist", tmp_path / "empty")
    msg = str(err.value)
    assert "MNIST/raw" in msg and "train-images-idx3-ubyte" in msg and "--download" in msg and "\n" not in msg


def test_truncated_file_in_a_torchvision_folder(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_folder(raw, 100, 20)
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ConfigError, match="train-labels-idx1-ubyte: truncated IDX file: header says 100 uint8"):
        load_bundle(cfg(dataset="mnist", data_dir=str(tmp_path)))


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*_a, **_k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://...")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(ConfigError, match=r"^--download mnist into .* failed: Error downloading [^\n]*$"):
        load_bundle(cfg(dataset="mnist", data_dir=str(tmp_path), download=True))


# --------------------------------------------------------------------------- .npz
def test_npz_both_layouts(tmp_path):
    X, y = fake_images(60)
    np.savez(tmp_path / "square.npz", X=X, y=y)
    np.savez(tmp_path / "flat.npz", X=X.reshape(60, 784), y=y.astype(np.int64)[:, None])
    for name in ("square.npz", "flat.npz"):
        Xa, ya = load_npz(tmp_path / name)
        assert Xa.shape == (60, 1, 28, 28) and Xa.dtype == np.uint8 and ya.dtype == np.int64
        assert np.array_equal(Xa[:, 0], X) and np.array_equal(ya, y)
    b = load_bundle(cfg(data_dir=str(tmp_path / "flat.npz"), dataset="npz"))
    assert (len(b.train), len(b.val), len(b.test)) == (43, 5, 12)
    x = b.input_transform()(b.train.X)
    assert x.dtype == torch.float32 and float(x.min()) >= 0 and float(x.max()) == 1.0  # (N, 1, 28, 28) in [0, 1]
    assert b.input_shape == (1, 28, 28)
    # a recipe plus --data-dir pointing at an .npz is enough: the format is detected
    assert load_bundle(cfg(recipe="mnist-lenet", data_dir=str(tmp_path / "square.npz"))).meta["source"] == "npz"


@pytest.mark.parametrize("arrays,message", [
    ({"images": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(4, int)}, r"needs arrays 'X' .* found keys \['images', 'y'\]"),
    ({"X": np.zeros((4, 28, 28), np.uint8)}, r"needs arrays 'X' .*'y'"),
    ({"X": np.zeros((4, 32, 32), np.uint8), "y": np.zeros(4, int)}, r"X has shape \(4, 32, 32\); expected \(N, 28, 28\) or \(N, 784\)"),
    ({"X": np.zeros((4, 783), np.uint8), "y": np.zeros(4, int)}, r"X has shape \(4, 783\)"),
    ({"X": np.zeros((4, 28, 28), np.float32), "y": np.zeros(4, int)}, r"X must be uint8 pixels 0..255, got float32"),
    ({"X": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(3, int)}, r"y must be 4 integer labels"),
    ({"X": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(4, float)}, r"y must be 4 integer labels .* float64"),
    ({"X": np.zeros((4, 28, 28), np.uint8), "y": -np.ones(4, int)}, r"labels must be >= 0"),
])
def test_npz_with_wrong_keys_or_shapes(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_truncated_or_missing_npz(tmp_path):
    X, y = fake_images(50)
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:3000])
    with pytest.raises(ConfigError, match=r"cut.npz: not a readable .npz file, truncated or damaged"):
        load_npz(tmp_path / "cut.npz")
    with pytest.raises(ConfigError, match="no such .npz file"):
        load_npz(tmp_path / "nope.npz")


# --------------------------------------------------------------------------- digits, normalisation
def test_digits_are_real_8x8_images_in_unit_range():
    b = load_bundle(cfg(dataset="digits"))
    assert b.input_shape == (1, 8, 8) and b.train.X.dtype == torch.float32
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert float(b.train.X.min()) == 0.0 and float(b.train.X.max()) == 1.0  # 0..16 scaled by 1/16
    assert b.classes == tuple("0123456789")
    assert torch.bincount(b.train.y, minlength=10).min() > 100  # every class present


def test_standard_normalisation_uses_the_training_split(tmp_path):
    b = load_bundle(cfg(dataset="digits", normalize="standard"))
    x = b.input_transform()(b.train.X)
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-3
    plain = load_bundle(cfg(dataset="digits"))
    assert torch.equal(plain.input_transform()(plain.train.X), plain.train.X)  # none: [0, 1] as stored
    path = b.save(tmp_path / "data.pt")  # the statistics travel with prepared data
    loaded = DataBundle.load(path)
    assert loaded.meta["mean"] == b.meta["mean"] and torch.equal(loaded.test.X, b.test.X)


def test_unknown_data_set_is_one_line():
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'; choose one of: cifar10, digits, fashion-mnist"):
        TrainConfig(dataset="svhn")
