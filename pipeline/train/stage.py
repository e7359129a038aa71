"""Stage `train`: fit one model and log its learning curves, filters and figures to MLflow.

Run as ``pipeline train [--recipe synthetic] [--filters 4] ...`` or
``mlflow run . -e train -P filters=4``; ``pipeline train --recipe fashion-lenet`` (or
``--dataset digits``) for the image labs. Reads prepared data (``--data-uri``) or builds
the recipe's data set on the fly; writes params, per-epoch ``train_loss``,
``train_accuracy``, ``val_loss``, ``val_accuracy`` (step = epoch; with minibatches also
``last_batch_loss``, the number the labs print), filter images (key ``filters``, step =
epoch), a model summary (``model_summary.txt``), final figures and the model
(``runs:/<id>/model``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.config.parsing import as_params
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig, check_batch_size
from pipeline.data.bundle import DataBundle
from pipeline.data.io import bundle_from_uri, log_bundle_input
from pipeline.data.load import load_bundle
from pipeline.models.registry import build_model, count_parameters
from pipeline.models.summary import model_summary
from pipeline.tracking import artifacts, runs
from pipeline.tracking.drawing import Drawing
from pipeline.tracking.metrics import MetricBuffer
from pipeline.train.batching import pick_device
from pipeline.train.figures import log_curves, log_detector_figures, log_filter_image, log_prediction_heatmap
from pipeline.train.loop import History, check_channels, fit


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    final: dict[str, float]  # last epoch's metrics
    history: History
    model: nn.Module


def load_data(cfg: TrainConfig) -> tuple[TrainConfig, DataBundle]:
    """The resolved config and its data: prepared (``--data-uri``, whose data set picks the recipe) or built."""
    if cfg.data_uri:
        bundle = bundle_from_uri(cfg.data_uri)
        if cfg.dataset is None:
            cfg = dataclasses.replace(cfg, dataset=bundle.name)
        return resolve(cfg), bundle
    cfg = resolve(cfg)
    bundle = load_bundle(cfg)
    if bundle.meta.get("data_dir"):  # logged absolute, so that evaluate finds it from any folder
        cfg = dataclasses.replace(cfg, data_dir=str(Path(cfg.data_dir).expanduser().resolve()))
    return cfg, bundle


def model_options(cfg: TrainConfig) -> dict:
    """The options that ``build_model`` passes to a 2D net (the 1D detector ignores them)."""
    return {"padding": cfg.padding, "dropout": cfg.dropout, "batch_norm": cfg.batch_norm,
            "log_softmax": cfg.loss == "nll"}


def make_model(cfg: TrainConfig, bundle: DataBundle) -> nn.Module:
    """The (resolved) config's model for this data, initialised by torch.manual_seed(cfg.seed)."""
    num_outputs = 1 if bundle.task == "binary" else len(bundle.classes)
    return build_model(cfg.model, bundle.input_shape, num_outputs, cfg.filters, cfg.kernel_size, seed=cfg.seed,
                       **model_options(cfg))


def run(cfg: TrainConfig, echo: Callable[[str], None] = print) -> TrainResult:
    """Train one model as the (resolved) config says, inside an MLflow run."""
    import mlflow

    drawing = Drawing()  # its helper process starts now, and loads matplotlib while this one trains
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    cfg, bundle = load_data(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_channels(cfg.in_channels, bundle, f"{cfg.model} (--in-channels {cfg.in_channels}, recipe {cfg.recipe})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model = make_model(cfg, bundle).to(device)
    tags = {"recipe": cfg.recipe, "dataset": bundle.name, "model": cfg.model, "seed": cfg.seed}
    run_name = f"train-{cfg.model}-F{','.join(map(str, cfg.filters))}-k{','.join(map(str, cfg.kernel_size))}-s{cfg.seed}"
    # the run ends after `drawing` has logged every figure (contexts exit innermost first)
    with runs.stage_run("train", run_name=run_name, tags=tags) as active, drawing:
        runs.log_params_safely(as_params(cfg))
        runs.log_params_safely({"num_parameters": count_parameters(model), "device": str(device)})
        mlflow.log_dict(dataclasses.asdict(cfg), "config.json")
        artifacts.log_text(model_summary(model, bundle.input_shape), "model_summary.txt")
        log_bundle_input(bundle, context="training")
        image_every = cfg.image_every or 0
        if image_every:
            log_filter_image(drawing, model, step=0)
        # filter images are logged with the metrics' batches: every 10 s, and at the end
        with MetricBuffer(active.info.run_id, on_flush=drawing.log_ready) as metrics:

            def on_epoch(epoch: int, values: dict[str, float]) -> None:
                metrics.log(values, step=epoch)
                if image_every and (epoch % image_every == 0 or epoch == cfg.epochs):
                    log_filter_image(drawing, model, step=epoch)

            history = fit(model, bundle, cfg, device, on_epoch=on_epoch, echo=echo, progress=True)
            model.cpu().eval()
            # the figures go to the helper first: it draws them while the metrics are sent and the model logged
            log_curves(drawing, history)
            if bundle.task == "binary" and hasattr(model, "linear"):
                log_detector_figures(drawing, model, bundle)
            if bundle.task == "multiclass":
                log_prediction_heatmap(drawing, model, bundle)
        mlflow.log_dict(history.last(), "final_metrics.json")
        model_uri = artifacts.log_model(model, input_example=bundle.input_transform()(bundle.train.X[:2]).numpy())
        return TrainResult(active.info.run_id, model_uri, history.last(), history, model)


def summary_line(result: TrainResult) -> str:
    return json.dumps({k: round(v, 4) for k, v in result.final.items()})
