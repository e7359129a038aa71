"""Stage `train`: fit one model and log its learning curves, filters and figures to MLflow.

Run as ``pipeline train [--recipe synthetic] [--filters 4] ...`` or
``mlflow run . -e train -P filters=4``; ``pipeline train --recipe fashion-lenet`` (or
``--dataset digits``) for the image labs. Reads prepared data (``--data-uri``) or builds
the recipe's data set on the fly; writes a run named after what it trains (``train F4 k5
s0``) with a two-line description, the params that define it (the whole config in
``config.json``), per-epoch ``train_loss``, ``train_accuracy``, ``val_loss``,
``val_accuracy`` (step = epoch; with minibatches also ``last_batch_loss``, the number the
labs print), filter images (key ``filters``, step = epoch), a model summary
(``model_summary.txt``), final figures (``figures/filters_final.png``,
``learning_curves.png``, ``predictions_train.png``) and the model, named after what it is
(``runs:/<id>/detector1d-F4-k5``), which answers with class probabilities when served.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pipeline.config.checks import fits_in_memory
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig, check_batch_size
from pipeline.data.bundle import DataBundle
from pipeline.data.io import bundle_from_uri, log_bundle_input
from pipeline.data.load import load_bundle
from pipeline.models.registry import build_model, count_parameters, memory_needed
from pipeline.models.summary import model_summary
from pipeline.tracking import artifacts, checkpoints, provenance, runs, system
from pipeline.tracking.checkpoints import Checkpoint
from pipeline.tracking.drawing import Drawing
from pipeline.tracking.experiments import shape_label
from pipeline.tracking.metrics import MetricBuffer, metric_steps
from pipeline.tracking.rescue import Keep
from pipeline.train.batching import pick_device
from pipeline.train.checkpoint import Checkpoints
from pipeline.train.figures import (log_curves, log_detector_figures, log_filter_image, log_final_filters,
                                    log_prediction_heatmap)
from pipeline.train.loop import History, check_channels, fit


SIGNAL_FLUSH_S = 1.0  # on a signal, metrics are sent for this long at most: the rest go into the checkpoint,
# so that the stage exits within 5 s (well within `docker stop`'s 10 s grace period): with 2 s, a 1D train of
# 20000 epochs on two busy cores took 5.3 s from SIGTERM to exit (checkpoint, artifact and the run's end follow)


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


def check_model(cfg: TrainConfig, bundle: DataBundle, copies: int = 1) -> None:
    """The (resolved) config's model (``copies`` of it, trained at once) can be built for this data and
    trained in this machine's memory (worked out on the meta device: nothing is allocated)."""
    batch = max(cfg.batch_size or len(bundle.train), min(cfg.test_batch_size, len(bundle.val)))
    need = memory_needed(cfg.model, bundle.input_shape, _outputs(bundle), cfg.filters, cfg.kernel_size, batch,
                         **model_options(cfg))
    what = f"{copies} x {cfg.model}" if copies > 1 else cfg.model
    fits_in_memory(need * copies, f"training {what} with --filters {','.join(map(str, cfg.filters))} on batches "
                                  f"of {batch}", "use fewer --filters or a smaller --batch-size (or fewer --seeds)")


def _outputs(bundle: DataBundle) -> int:
    return 1 if bundle.task == "binary" else len(bundle.classes)


def make_model(cfg: TrainConfig, bundle: DataBundle) -> nn.Module:
    """The (resolved) config's model for this data, initialised by torch.manual_seed(cfg.seed)."""
    check_model(cfg, bundle)
    num_outputs = _outputs(bundle)
    return build_model(cfg.model, bundle.input_shape, num_outputs, cfg.filters, cfg.kernel_size, seed=cfg.seed,
                       **model_options(cfg))


def run_name(stage: str, cfg: TrainConfig, dataset: str) -> str:
    """'train F4 k5 s0' on the synthetic data; 'train digits F6,16 k5 s0' on images."""
    data = "" if dataset == "synthetic" else f"{dataset} "
    return f"{stage} {data}{shape_label(cfg.filters, cfg.kernel_size)} s{cfg.seed}"


def describe_training(cfg: TrainConfig, bundle: DataBundle, n_params: int) -> str:
    """The first line of a train run's description: what was trained, on what, how."""
    batch = "full-batch" if not cfg.batch_size else f"batch {cfg.batch_size}"
    return (f"Trains {cfg.model} (filters {','.join(map(str, cfg.filters))}, kernel size "
            f"{','.join(map(str, cfg.kernel_size))}, {n_params:,} parameters) from seed {cfg.seed} on {bundle.name} "
            f"({len(bundle.train)} training rows): {cfg.epochs} epochs, {batch} {cfg.optimizer} at lr {cfg.lr:g}.")


def describe_result(final: dict[str, float], bundle: DataBundle, name: str) -> str:
    """The second line: where training ended (for the 1D detector, whether it succeeded: loss < 0.05 at
    100% training accuracy)."""
    verdict = ""
    if bundle.name == "synthetic":
        solved = final["train_loss"] < 0.05 and final["train_accuracy"] == 1.0
        verdict = (" Succeeded: loss < 0.05 at 100% training accuracy." if solved
                   else " Failed: loss >= 0.05 or a training error (`pipeline diagnose` says whether it is a minimum).")
    return (f"Final training loss {final['train_loss']:.4f} (accuracy {final['train_accuracy']:.3f}), validation "
            f"accuracy {final['val_accuracy']:.3f}.{verdict} Model `{name}`.")


def final_figures(drawing: Drawing, model: torch.nn.Module, bundle: Any, cfg: TrainConfig, history: Any) -> None:
    """The trained model's figures, handed to the drawing helper: filters, curves, and its data's own."""
    final = history.last()
    log_final_filters(drawing, model, f"{run_name('train', cfg, bundle.name)}: filters after {cfg.epochs} "
                                      f"epochs (train loss {final['train_loss']:.4f})")
    log_curves(drawing, history)
    if bundle.task == "binary" and hasattr(model, "linear"):
        log_detector_figures(drawing, model, bundle)
    if bundle.task == "multiclass":
        log_prediction_heatmap(drawing, model, bundle)


def run_tags(cfg: TrainConfig, dataset: str, device: torch.device) -> dict[str, Any]:
    """What the runs table groups train runs by."""
    return {"recipe": cfg.recipe, "dataset": dataset, "model": cfg.model, "seed": cfg.seed,
            "filters": ",".join(map(str, cfg.filters)), "kernel_size": ",".join(map(str, cfg.kernel_size)),
            "device": str(device), "data_uri": cfg.data_uri}


def run(cfg: TrainConfig, echo: Callable[[str], None] = print) -> TrainResult:
    """Train one model as the (resolved) config says, inside an MLflow run (with ``--resume``: the run that
    a checkpoint continues, with the checkpoint's settings)."""
    drawing = Drawing()  # its helper process starts now, and loads matplotlib while this one trains
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    start = None
    if cfg.resume:
        _, start = checkpoints.load(cfg.resume, "train")
        cfg = checkpoints.resumed_config(start, cfg)
    cfg, bundle = load_data(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_channels(cfg.in_channels, bundle, f"{cfg.model} (--in-channels {cfg.in_channels}, recipe {cfg.recipe})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model = make_model(cfg, bundle).to(device)
    n_params = count_parameters(model)
    name = artifacts.model_name(cfg.model, cfg.filters, cfg.kernel_size)
    epochs: list[dict[str, float]] = []
    latest: dict[str, Any] = {}  # the last checkpoint: saved locally too if the tracking store goes away
    keep = Keep(config=cfg, metrics=epochs, model=model, checkpoint=lambda: Checkpoint(latest))
    # the run ends after `drawing` has logged every figure (contexts exit innermost first)
    with runs.stage_run("train", run_name=run_name("train", cfg, bundle.name), tags=run_tags(cfg, bundle.name, device),
                        keep=keep, run_id=start and start["run_id"], system_metrics=system.wanted(cfg)) as active, \
            drawing:
        what = describe_training(cfg, bundle, n_params)
        if start is None:
            _log_start(cfg, bundle, model, what, drawing)
        with MetricBuffer(active.info.run_id, on_flush=drawing.log_ready,
                          logged_through=_logged_steps(active.info.run_id, start)) as metrics:
            metrics.restore((start or {}).get("pending_metrics", []))
            metrics.log({"num_parameters": n_params}, step=0)
            saver = _Saver(cfg, active.info.run_id, metrics, latest)
            history = fit(model, bundle, cfg, device, on_epoch=_on_epoch(cfg, model, drawing, metrics, epochs),
                          echo=echo, progress=True, checkpoints=Checkpoints(saver, cfg.checkpoint_every, start,
                                                  checkpoints.resume_command("train", active.info.run_id)))
            model.cpu().eval()
            final = history.last()
            # the figures go to the helper first: it draws them while the metrics are sent and the model logged
            final_figures(drawing, model, bundle, cfg, history)
        artifacts.log_dict(final, "final_metrics.json")
        model_uri = artifacts.log_model(model, input_example=bundle.input_transform()(bundle.train.X[:2]).numpy(),
                                        name=name, classes=bundle.classes, registered_model_name=cfg.register_model,
                                        alias=cfg.alias)
        provenance.describe(what, describe_result(final, bundle, name))
        return TrainResult(active.info.run_id, model_uri, final, history, model)


def _log_start(cfg: TrainConfig, bundle: DataBundle, model: nn.Module, what: str, drawing: Drawing) -> None:
    """What a new train run logs before training: its config, description, model summary, data, first filters."""
    provenance.log_config(cfg)
    provenance.describe(what)
    artifacts.log_text(model_summary(model, bundle.input_shape), "model_summary.txt")
    log_bundle_input(bundle, context="training")
    if cfg.image_every:
        log_filter_image(drawing, model, step=0, caption="initial weights")


def _on_epoch(cfg: TrainConfig, model: nn.Module, drawing: Drawing, metrics: MetricBuffer,
              epochs: list) -> Callable[[int, dict[str, float]], None]:
    """Each epoch's metrics (step = epoch) and, every ``image_every`` epochs, its filters (sent with the metrics'
    batches: every 10 s, and at the end)."""
    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        epochs.append({"epoch": epoch, **values})
        metrics.log(values, step=epoch)
        if cfg.image_every and (epoch % cfg.image_every == 0 or epoch == cfg.epochs):
            log_filter_image(drawing, model, step=epoch, caption=f"train loss {values['train_loss']:.4f}")

    return on_epoch


def _logged_steps(run_id: str, start: dict[str, Any] | None) -> dict[str, int]:
    """Per metric, the last step that a resumed run has in the store already (none for a new run)."""
    return metric_steps(run_id) if start is not None else {}


class _Saver:
    """Sends the loop's checkpoints: with the metrics not sent yet, as ``checkpoints/last.pt``; on a signal,
    first what metrics fit in ``SIGNAL_FLUSH_S``, and the signal's line then names the resume command."""

    def __init__(self, cfg: TrainConfig, run_id: str, metrics: MetricBuffer, latest: dict[str, Any]):
        self.cfg, self.run_id, self.metrics, self.latest = cfg, run_id, metrics, latest

    def __call__(self, state: dict[str, Any], interrupted: bool) -> None:
        if interrupted:
            self.metrics.flush(seconds=SIGNAL_FLUSH_S)
        self.latest.clear()
        self.latest.update(state, stage="train", run_id=self.run_id, pending_metrics=self.metrics.pending(),
                           config=checkpoints.kept_config(self.cfg))
        checkpoints.log(self.latest, self.run_id)
        if interrupted:
            self.metrics.drop_pending()  # in the checkpoint: the resumed run sends them


def summary_line(result: TrainResult) -> str:
    return json.dumps({k: round(v, 4) for k, v in result.final.items()})
