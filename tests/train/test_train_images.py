"""train and evaluate on image data, end to end against a temporary MLflow store; the 1D slice unchanged."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from pipeline.config.recipes import resolve
from pipeline.config.stages import EvaluateConfig, PrepareDataConfig, TrainConfig
from pipeline.data import prepare as prepare_data
from pipeline.data.load import load_bundle
from pipeline.evaluate import stage as evaluate
from pipeline.models.registry import build_model
from pipeline.train import batching
from pipeline.train import stage as train
from pipeline.train.batching import minibatches
from pipeline.train.loop import fit


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, f.path) if f.is_dir else {f.path}
    return out


# --------------------------------------------------------------------------- the 1D slice stays as it was
def test_synthetic_training_is_unchanged(capsys):
    """Numbers recorded with the skeleton's loop before the 2D work: the shared loop reproduces them."""
    expected = {(3, 0): (0.8562400309244792, 0.3443568166097005, 0.26882171630859375),
                (4, 1): (0.5509015909830729, 0.3131559244791667, 0.2513634264469147)}
    for (f, seed), (first, last, val) in expected.items():
        cfg = resolve(TrainConfig(filters=(f,), seed=seed, epochs=60))
        assert cfg.batch_size == 0 and cfg.device == "cpu"  # the synthetic recipe keeps full batch
        bundle = load_bundle(cfg)
        model = build_model(cfg.model, bundle.input_shape, 1, cfg.filters, cfg.kernel_size, seed=cfg.seed)
        h = fit(model, bundle, cfg, torch.device("cpu"))
        assert (h.train_loss[0], h.train_loss[-1], h.val_loss[-1]) == pytest.approx((first, last, val), rel=1e-6)
        assert h.last_batch_loss == []  # one batch per epoch: nothing new is logged
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["Epoch 1 had training loss 0.8562", "Epoch 50 had training loss 0.3519",
                       "Epoch 1 had training loss 0.5509"]
    assert not any(line.startswith("Train Epoch") for line in out)


def test_minibatches_follow_the_order_across_chunks(monkeypatch):
    monkeypatch.setattr(batching, "CHUNK_BYTES", 4 * 3 * 7)  # chunks of 7 rows of 3 floats: many chunks
    X = torch.arange(50 * 3, dtype=torch.uint8).reshape(50, 3)
    y = torch.arange(50)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    batches = list(minibatches(X, y, 7, torch.device("cpu"), lambda x: x.float(), order))
    assert [len(b) for b, _ in batches] == [7] * 7 + [1]
    assert torch.equal(torch.cat([yb for _, yb in batches]), order)  # batch b = rows order[b*bs:(b+1)*bs]
    assert torch.equal(torch.cat([xb for xb, _ in batches]), X[order].float())
    assert len(list(minibatches(X, y, 7, torch.device("cpu"), lambda x: x, order, max_batches=3))) == 3


# --------------------------------------------------------------------------- digits: train -> evaluate
def test_digits_lenet_trains_and_evaluates_above_95_percent(tracking_uri, client, capsys):
    result = train.run(TrainConfig(dataset="digits", threads=2))
    out = capsys.readouterr().out
    run = client.get_run(result.run_id)
    assert run.data.tags["recipe"] == "digits-lenet" and run.data.tags["dataset"] == "digits"
    assert run.data.params["model"] == "lenet" and run.data.params["padding"] == "same"
    epochs = int(run.data.params["epochs"])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "last_batch_loss"):
        assert metric_steps(client, result.run_id, key) == list(range(1, epochs + 1)), key
    assert "Train Epoch: 1 [0/1294 (0%)]\tLoss: 2.3" in out  # the labs' script's line
    assert "Epoch 1: final minibatch loss" in out and "had training loss" not in out
    files = artifact_paths(client, result.run_id)
    filter_steps = {int(p.split("+step+")[1].split("+")[0]) for p in files if p.startswith("images/filters+step+")}
    assert filter_steps == set(range(0, epochs + 1))  # initial weights, then every epoch
    assert {"model_summary.txt", "figures/predictions_train.png", "figures/learning_curves.png", "config.json",
            "figures/filters_final.png"} <= files
    summary = client.download_artifacts(result.run_id, "model_summary.txt")
    text = open(summary).read()
    assert "features.conv2" in text and f"total parameters: {int(run.data.metrics['num_parameters']):,}" in text

    # evaluate finds the data set, recipe and split from the run: no data options repeated
    ev = evaluate.run(EvaluateConfig(run_id=result.run_id))
    assert ev.test_accuracy >= 0.95, ev.test_accuracy
    erun = client.get_run(ev.run_id)
    assert erun.data.tags["dataset"] == "digits" and erun.data.params["recipe"] == "digits-lenet"
    assert erun.data.metrics["test_accuracy"] == pytest.approx(ev.test_accuracy)
    efiles = artifact_paths(client, ev.run_id)
    assert {"per_class_accuracy.csv", "confusion_matrix.csv", "figures/confusion_matrix.png",
            "figures/easiest_examples.png", "figures/hardest_examples.png", "figures/feature_maps.png",
            "figures/filters.png"} <= efiles
    per_class = pd.read_csv(client.download_artifacts(ev.run_id, "per_class_accuracy.csv"))
    assert per_class["n"].sum() == 359  # the held-out test split
    assert per_class["correct"].sum() / per_class["n"].sum() == pytest.approx(ev.test_accuracy)
    for i, acc in enumerate(per_class["accuracy"]):
        assert erun.data.metrics[f"test_accuracy_class_{i}"] == pytest.approx(acc)
    print(f"\ndigits-lenet test accuracy: {ev.test_accuracy:.4f}")


def test_prepared_image_data_flows_through_train_and_evaluate(tracking_uri, client, capsys):
    prepared = prepare_data.run(PrepareDataConfig(dataset="digits"))
    files = artifact_paths(client, prepared.run_id)
    assert {"data/data.pt", "figures/samples.png", "class_counts.json"} <= files
    metrics = client.get_run(prepared.run_id).data.metrics
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (1294, 144, 359)
    counts = json.load(open(client.download_artifacts(prepared.run_id, "class_counts.json")))
    assert sum(counts.values()) == 1294 and set(counts) == set("0123456789")

    trained = train.run(TrainConfig(data_uri=prepared.data_uri, epochs=1, image_every=0, log_interval=0))
    assert client.get_run(trained.run_id).data.tags["recipe"] == "digits-lenet"  # the data picked its recipe
    ev = evaluate.run(EvaluateConfig(model_uri=trained.model_uri))
    assert client.get_run(ev.run_id).data.tags["data_uri"] == prepared.data_uri
    assert "359 test images of digits" in capsys.readouterr().out


def test_logged_model_is_a_module_in_eval_mode(tracking_uri):
    import mlflow

    result = train.run(TrainConfig(recipe="mnist-dropout", dataset="digits", padding="same", epochs=1,
                                   image_every=0, log_interval=0))
    model = mlflow.pytorch.load_model(result.model_uri)
    assert type(model).__name__ == "ConvNet2d" and model.log_softmax  # log-softmax + NLL, as the lab
    model.eval()
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(x), model(x))  # dropout off in eval mode

