"""Acceptance on real data, offline: mnist-small on the shared MNIST test split (8,000 / 2,000)."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from pipeline.config.stages import EvaluateConfig, TrainConfig
from pipeline.data.formats import read_idx
from pipeline.evaluate import stage as evaluate
from pipeline.train import stage as train

from helpers import SHARED_MNIST

pytestmark = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"the real MNIST test split is not at {SHARED_MNIST} (../shared/data/mnist from the repo root; "
           f"a user's own checkout has none)",
)


def test_reader_agrees_with_torchvision_on_the_real_files(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for name, reader in (("t10k-images-idx3-ubyte", read_image_file), ("t10k-labels-idx1-ubyte", read_label_file)):
        plain = tmp_path / name
        plain.write_bytes(gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes()))
        ours = read_idx(SHARED_MNIST / f"{name}.gz")
        assert np.array_equal(ours, reader(str(plain)).numpy())
    assert ours.shape == (10_000,) and np.bincount(ours).min() > 850  # all ten digits


def test_mnist_small_two_epochs_on_8000_real_images(tracking_uri, client, capsys):
    """Train on 8,000 images (7,200 + 800 for validation), evaluate on the other 2,000.

    The recipe as the lab has it, plus per-channel standardisation: with only 2 x 80
    minibatches, raw [0, 1] pixels leave the lab's SGD at 0.94-0.96 depending on the seed.
    """
    result = train.run(TrainConfig(recipe="mnist-small", data_dir=str(SHARED_MNIST), epochs=2,
                                   normalize="standard"))
    params = client.get_run(result.run_id).data.params
    assert params["dataset"] == "mnist" and params["batch_size"] == "100" and params["model"] == "smallconv"
    ev = evaluate.run(EvaluateConfig(run_id=result.run_id))  # finds folder, split and statistics itself
    out = capsys.readouterr().out
    assert "2000 test images of mnist" in out
    assert result.history.train_accuracy[-1] > 0.9
    assert ev.test_accuracy >= 0.95, ev.test_accuracy
    print(f"\nreal MNIST, mnist-small, 2 epochs on 8,000 images: test accuracy {ev.test_accuracy:.4f} on 2,000")
