"""Bad input for image data ends in one line, `Error: ...`, exit status 2, and no MLflow run."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate import stage as evaluate
from pipeline.cli import main
from pipeline.config.stages import EvaluateConfig, TrainConfig
from pipeline.train import stage as train

from helpers import run_cli
from imagefiles import write_mnist_folder


def cli_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err  # may also hold MLflow's own log lines (a new store's tables)
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and [ln for ln in lines if "Error" in ln] == lines[-1:], err
    assert lines[-1].startswith("Error: ")
    return lines[-1]


def no_runs(client) -> bool:
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_unknown_data_set(capsys, client):
    assert "unknown dataset 'svhn'; choose one of: cifar10, digits" in cli_error(capsys, "train", "--dataset", "svhn")
    assert no_runs(client)


def test_missing_files_without_download(capsys, client, tmp_path):
    line = cli_error(capsys, "train", "--recipe", "fashion-lenet", "--data-dir", str(tmp_path))
    assert f"fashion-mnist: 4 of its 4 files are missing in {tmp_path}/FashionMNIST/raw" in line
    assert "train-images-idx3-ubyte" in line and "pass --download to fetch them" in line
    line = cli_error(capsys, "prepare-data", "--dataset", "cifar10", "--data-dir", str(tmp_path))
    assert "cifar-10-batches-py" in line and "data_batch_1" in line
    assert no_runs(client)


def test_npz_with_wrong_keys_or_shapes(capsys, client, tmp_path):
    np.savez(tmp_path / "keys.npz", images=np.zeros((5, 28, 28), np.uint8), labels=np.zeros(5, int))
    line = cli_error(capsys, "train", "--recipe", "mnist-small", "--data-dir", str(tmp_path / "keys.npz"))
    assert "needs arrays 'X'" in line and "found keys ['images', 'labels']" in line
    np.savez(tmp_path / "shape.npz", X=np.zeros((5, 32, 32), np.uint8), y=np.zeros(5, int))
    line = cli_error(capsys, "train", "--dataset", "npz", "--data-dir", str(tmp_path / "shape.npz"))
    assert "X has shape (5, 32, 32); expected (N, 28, 28) or (N, 784)" in line
    assert no_runs(client)


def test_kernel_too_large_names_the_layer_and_sizes(capsys, client):
    line = cli_error(capsys, "train", "--dataset", "digits", "--padding", "valid")
    assert "lenet: kernel 5x5 of conv2 is too large for its 2x2 input feature map (input 1x8x8" in line
    line = cli_error(capsys, "train", "--dataset", "digits", "--model", "conv3", "--filters", "4,4,4",
                     "--kernel-size", "3", "--padding", "valid")
    assert "conv3: pooling window 2x2 of pool2 is too large for its 1x1 input feature map" in line
    assert no_runs(client)


def test_batch_size_zero_is_for_the_synthetic_data_only(capsys, client):
    line = cli_error(capsys, "train", "--recipe", "mnist-small", "--batch-size", "0")
    assert line == "Error: --batch-size must be >= 1 for mnist (0 = full batch is for the synthetic data only)"
    assert "--batch-size must be >= 1 for digits" in cli_error(capsys, "train", "--dataset", "digits",
                                                               "--batch-size", "0")
    assert TrainConfig(batch_size=0).batch_size == 0  # the synthetic recipe's full batch stays
    assert no_runs(client)


def test_three_channel_model_on_one_channel_data(capsys, client, tmp_path):
    line = cli_error(capsys, "train", "--recipe", "cifar-lenet", "--dataset", "digits")
    assert line == ("Error: lenet (--in-channels 3, recipe cifar-lenet) expects 3-channel images, but digits has "
                    "1 channel (1x8x8)")
    assert no_runs(client)


def test_evaluate_options_override_the_runs_and_another_shape_is_refused(capsys, tracking_uri, client, tmp_path):
    result = train.run(TrainConfig(dataset="digits", epochs=1, image_every=0, log_interval=0))
    ev = evaluate.run(EvaluateConfig(run_id=result.run_id, split_seed=3, test_fraction=0.1))  # explicit wins
    params = client.get_run(ev.run_id).data.params
    assert (params["dataset"], params["split_seed"], params["test_fraction"]) == ("digits", "3", "0.1")
    assert "180 test images of digits" in capsys.readouterr().out
    write_mnist_folder(tmp_path / "mnist", None, 100)
    line = cli_error(capsys, "evaluate", "--run-id", result.run_id, "--dataset", "mnist",
                     "--data-dir", str(tmp_path / "mnist"))
    assert line == "Error: the model was built for 1x8x8 images, but mnist has 1x28x28"


def test_the_console_script_prints_one_line(tracking_uri):
    code, out, err = run_cli("train", "--dataset", "digits", "--batch-size", "0")
    assert code == 2 and out == ""
    assert err.strip() == "Error: --batch-size must be >= 1 for digits (0 = full batch is for the synthetic data only)"
