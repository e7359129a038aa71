"""Stage `train`: fit one model and log its learning curves, filters and figures to MLflow.

Run as ``pipeline train [--recipe synthetic] [--filters 4] ...`` or
``mlflow run . -e train -P filters=4``; ``pipeline train --recipe fashion-lenet`` (or
``--dataset digits``) for the image labs. Reads prepared data (``--data-uri``) or builds
the recipe's data set on the fly; writes params, per-epoch ``train_loss``,
``train_accuracy``, ``val_loss``, ``val_accuracy`` (step = epoch; with minibatches also
``last_batch_loss``, the number the labs print), filter images (key ``filters``, step =
epoch), a model summary (``model_summary.txt``), final figures and the model
(``runs:/<id>/model``).

The data lives as tensors (on the GPU when it fits) and minibatches are index
permutations of them: no DataLoader, no per-sample Python.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline import tracking
from pipeline.batching import minibatches, pick_device, place
from pipeline.config import ConfigError, TrainConfig, as_params, check_batch_size, resolve
from pipeline.data.bundle import DataBundle, load_bundle
from pipeline.data.io import bundle_from_uri, log_bundle_input
from pipeline.models import build_model, count_parameters, model_summary
from pipeline.train_figures import (
    log_curves,
    log_detector_figures,
    log_filter_image,
    log_prediction_heatmap,
)


# --------------------------------------------------------------------------- pieces
def make_criterion(loss: str) -> nn.Module:
    if loss == "bce":
        return nn.BCEWithLogitsLoss()
    if loss == "ce":
        return nn.CrossEntropyLoss()
    if loss == "nll":
        return nn.NLLLoss()  # for models whose forward ends in log_softmax
    raise ConfigError(f"unknown loss {loss!r}; choose bce, ce or nll")


def correct_count(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Number of correct predictions: logit > 0 for binary tasks, argmax otherwise."""
    if task == "binary":
        return ((out > 0).to(y.dtype) == y).sum()
    return (out.argmax(dim=1) == y).sum()


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    momentum, weight_decay = cfg.momentum or 0.0, cfg.weight_decay or 0.0
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=weight_decay)
    if cfg.optimizer == "rmsprop":  # torch's defaults otherwise (alpha 0.99, eps 1e-8), as the lab
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=momentum, weight_decay=weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, rmsprop or adam")


@torch.no_grad()
def evaluate_split(model: nn.Module, X: torch.Tensor, y: torch.Tensor, criterion: nn.Module, task: str,
                   batch_size: int = 0, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   device: torch.device | None = None) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    n = X.shape[0]
    bs = batch_size or n
    device = device or X.device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)  # float64: a whole split's sum
    correct = torch.zeros((), device=device, dtype=torch.long)
    for xb, yb in minibatches(X, y, bs, device, transform or (lambda x: x)):
        out = model(xb)
        total_loss += criterion(out, yb).double() * xb.shape[0]
        correct += correct_count(out, yb, task)
    model.train(was_training)
    return float(total_loss) / n, int(correct) / n


@dataclass
class History:
    """Per-epoch curves (index 0 = epoch 1)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    last_batch_loss: list[float] = field(default_factory=list)  # minibatch training only

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in dataclasses.asdict(self).items() if v}


def fit(
    model: nn.Module,
    bundle: DataBundle,
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    echo: Callable[[str], None] = print,
) -> History:
    """The training loop for one model: one pass per epoch over shuffled minibatches.

    With ``batch_size`` 0 it is the lab's full-batch loop (one step per epoch). The
    epoch's ``train_loss`` is the mean of its minibatch losses before each step, which
    for full batch is exactly the loss that the lab prints. Losses and counts stay on the
    device; the only host syncs are the epoch's end and the ``log_interval`` prints.
    """
    cfg = resolve(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    criterion = make_criterion(cfg.loss)
    optimizer = make_optimizer(cfg, model.parameters())
    transform = bundle.input_transform(device)
    X, y = place(bundle.train.X, device), place(bundle.train.y, device)
    Xv, yv = place(bundle.val.X, device), place(bundle.val.y, device)
    n = X.shape[0]
    bs = cfg.batch_size or n
    n_batches = math.ceil(n / bs) if not cfg.max_batches else min(cfg.max_batches, math.ceil(n / bs))
    gen = torch.Generator().manual_seed(cfg.seed)
    log_interval = cfg.log_interval or 0
    history = History()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen).to(X.device) if bs < n else None
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for b, (xb, yb) in enumerate(minibatches(X, y, bs, device, transform, order, cfg.max_batches)):
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = criterion(out, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * xb.shape[0]
            correct += correct_count(out.detach(), yb, bundle.task)
            seen += xb.shape[0]
            if log_interval and b % log_interval == 0:  # the labs' script's progress line
                echo(f"Train Epoch: {epoch} [{b * bs}/{n} ({100.0 * b / n_batches:.0f}%)]\tLoss: {loss.item():.6f}")
        train_loss = float(loss_sum) / seen
        if cfg.print_every and (epoch == 1 or epoch % cfg.print_every == 0):
            echo("Epoch %d had training loss %.4f" % (epoch, train_loss))
        val_loss, val_acc = evaluate_split(model, Xv, yv, criterion, bundle.task, batch_size=cfg.test_batch_size,
                                           transform=transform, device=device)
        metrics = {
            "train_loss": train_loss,
            "train_accuracy": int(correct) / seen,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        last_batch_loss = float(loss.detach())
        if n_batches > 1:
            metrics["last_batch_loss"] = last_batch_loss
        if log_interval:
            nv = Xv.shape[0]
            echo(f"Epoch {epoch}: final minibatch loss {last_batch_loss:.4f}; validation set: average loss "
                 f"{val_loss:.4f}, accuracy {round(val_acc * nv)}/{nv} ({100.0 * val_acc:.0f}%)")
        for k, v in metrics.items():
            getattr(history, k).append(v)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return history


# --------------------------------------------------------------------------- stage
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


def check_channels(expected: int | None, bundle: DataBundle, what: str = "the model") -> None:
    """A model for ``expected``-channel images must not meet data of another channel count."""
    c = bundle.input_shape[0]
    if bundle.train.X.ndim == 4 and expected is not None and expected != c:
        raise ConfigError(f"{what} expects {expected}-channel images, but {bundle.name} has {c} "
                          f"channel{'s' * (c > 1)} ({'x'.join(map(str, bundle.input_shape))})")


def run(cfg: TrainConfig, echo: Callable[[str], None] = print) -> TrainResult:
    """Train one model as the (resolved) config says, inside an MLflow run."""
    import mlflow

    tracking.configure(cfg.tracking_uri, cfg.experiment_name)
    cfg, bundle = load_data(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_channels(cfg.in_channels, bundle, f"{cfg.model} (--in-channels {cfg.in_channels}, recipe {cfg.recipe})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model = make_model(cfg, bundle).to(device)
    tags = {"recipe": cfg.recipe, "dataset": bundle.name, "model": cfg.model, "seed": cfg.seed}
    run_name = f"train-{cfg.model}-F{','.join(map(str, cfg.filters))}-k{','.join(map(str, cfg.kernel_size))}-s{cfg.seed}"
    with tracking.stage_run("train", run_name=run_name, tags=tags) as active:
        tracking.log_params_safely(as_params(cfg))
        tracking.log_params_safely({"num_parameters": count_parameters(model), "device": str(device)})
        mlflow.log_dict(dataclasses.asdict(cfg), "config.json")
        tracking.log_text(model_summary(model, bundle.input_shape), "model_summary.txt")
        log_bundle_input(bundle, context="training")
        image_every = cfg.image_every or 0
        if image_every:
            log_filter_image(model, step=0)
        with tracking.MetricBuffer(active.info.run_id) as metrics:

            def on_epoch(epoch: int, values: dict[str, float]) -> None:
                metrics.log(values, step=epoch)
                if image_every and (epoch % image_every == 0 or epoch == cfg.epochs):
                    log_filter_image(model, step=epoch)

            history = fit(model, bundle, cfg, device, on_epoch=on_epoch, echo=echo)
        model.cpu().eval()
        log_curves(history)
        if bundle.task == "binary" and hasattr(model, "linear"):
            log_detector_figures(model, bundle)
        if bundle.task == "multiclass":
            log_prediction_heatmap(model, bundle)
        mlflow.log_dict(history.last(), "final_metrics.json")
        model_uri = tracking.log_model(model, input_example=bundle.input_transform()(bundle.train.X[:2]).numpy())
        return TrainResult(active.info.run_id, model_uri, history.last(), history, model)


def summary_line(result: TrainResult) -> str:
    return json.dumps({k: round(v, 4) for k, v in result.final.items()})
