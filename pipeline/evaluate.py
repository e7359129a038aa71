"""Stage `evaluate`: score a logged model on fresh data and log what it learned.

Run as ``pipeline evaluate --model-uri runs:/<id>/model`` (or ``--run-id <id>``), or
``mlflow run . -e evaluate -P run_id=<id>``. Reads the model; writes ``test_loss``,
``test_accuracy``, confusion counts and figure, a prediction heatmap and, for the 1D
detector, which filter implements 0, +1, 0 and its kernel.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pipeline import tracking
from pipeline.config import ConfigError, EvaluateConfig, as_params, resolve
from pipeline.data.bundle import DataBundle, Split
from pipeline.data.synthetic import make_synthetic
from pipeline.train import correct_count, make_criterion, pick_device


@dataclass(frozen=True)
class EvalResult:
    run_id: str
    test_loss: float
    test_accuracy: float
    detector_filter: int | None  # 1D detector: index of the 0,+1,0 filter
    detector_kernel: list[float] | None


def load_model(uri: str, device: torch.device) -> torch.nn.Module:
    import mlflow

    try:
        return mlflow.pytorch.load_model(uri, map_location=device).eval()
    except Exception as err:  # noqa: BLE001 - MLflow raises many kinds; all mean "no such model"
        raise ConfigError(f"cannot load model {uri}: {str(err).splitlines()[0]}") from None


def _source_tag(run_id: str | None, key: str) -> str | None:
    import mlflow

    if run_id is None:
        return None
    try:
        return mlflow.MlflowClient().get_run(run_id).data.tags.get(key)
    except Exception:  # noqa: BLE001 - provenance is best effort when the source run is elsewhere
        return None


def source_run_id(uri: str) -> str | None:
    return uri.split("/")[1] if uri.startswith("runs:/") else None


def test_data(cfg: EvaluateConfig) -> DataBundle:
    dataset = cfg.dataset or "synthetic"
    if dataset != "synthetic":
        raise ConfigError(f"evaluate: unknown dataset {dataset!r}")
    X, y = make_synthetic(cfg.n, cfg.width, cfg.data_seed)
    split = Split(X, y)
    return DataBundle("synthetic", "binary", split, split, ("no pattern", "0,+1,0"),
                      {"n": cfg.n, "width": cfg.width, "data_seed": cfg.data_seed})


def detector_filter(model: torch.nn.Module) -> tuple[int, np.ndarray]:
    """The filter that acts as the 0,+1,0 detector: the one with the largest positive linear weight."""
    lin = model.linear.weight.detach().cpu().numpy().ravel()
    idx = int(np.argmax(lin))
    return idx, model.conv.weight.detach().cpu().numpy()[idx, 0]


@torch.no_grad()
def _evaluate_binary(model, bundle: DataBundle, echo) -> tuple[float, float, int | None, list[float] | None]:
    import mlflow

    from pipeline import plots

    X, y = bundle.train.X, bundle.train.y
    logits = model(X)
    loss = float(make_criterion("bce")(logits, y))
    acc = int(correct_count(logits, y, "binary")) / len(y)
    pred = (logits > 0).float()
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    mlflow.log_metrics({"test_loss": loss, "test_accuracy": acc, "true_positives": tp,
                        "true_negatives": tn, "false_positives": fp, "false_negatives": fn})
    cm = np.array([[tn, fp], [fn, tp]])
    tracking.log_figure(plots.confusion_figure(cm, bundle.classes), "figures/confusion_matrix.png")
    rows = slice(0, min(75, len(y)))
    fig = plots.heatmaps(
        [("X (test inputs)", X[rows, 0].numpy()), ("ŷ = P(pattern)", torch.sigmoid(logits[rows]).numpy()),
         ("y", y[rows].numpy())],
        suptitle=f"test set (first {rows.stop} of {len(y)} rows)", symmetric=[True, False, False],
    )
    tracking.log_figure(fig, "figures/test_heatmaps.png")
    idx, kernel = detector_filter(model)
    mlflow.log_metric("detector_filter", idx)
    mlflow.log_dict({"filter": idx, "kernel": [float(v) for v in kernel],
                     "linear_weight": float(model.linear.weight[0, idx])}, "detector_kernel.json")
    tracking.log_figure(plots.kernel_bars(kernel, f"filter {idx}: the 0,+1,0 detector"),
                        "figures/detector_kernel.png")
    taps = ", ".join(f"{v:+.3f}" for v in kernel)
    echo(f"detector filter {idx}: kernel [{taps}]")
    return loss, acc, idx, [float(v) for v in kernel]


def run(cfg: EvaluateConfig, echo: Callable[[str], None] = print) -> EvalResult:
    import mlflow

    cfg = resolve(cfg)
    tracking.configure(cfg.tracking_uri, cfg.experiment_name)
    device = pick_device(cfg.device)
    uri = cfg.resolved_model_uri
    model = load_model(uri, device)
    src = source_run_id(uri)
    bundle = test_data(cfg)
    tags = {"recipe": cfg.recipe, "dataset": bundle.name, "model": type(model).__name__,
            "source_run_id": src, "model_uri": uri, "seed": _source_tag(src, "seed")}
    with tracking.stage_run("evaluate", run_name=f"evaluate-{src or 'model'}", tags=tags) as active:
        tracking.log_params_safely({**as_params(cfg), "model_uri": uri})
        mlflow.log_dict(dataclasses.asdict(cfg), "config.json")
        loss, acc, idx, kernel = _evaluate_binary(model.to("cpu"), bundle, echo)
        echo(f"test_loss {loss:.4f}  test_accuracy {acc:.4f}  ({len(bundle.train)} fresh rows, "
             f"data seed {cfg.data_seed})")
        return EvalResult(active.info.run_id, loss, acc, idx, kernel)
