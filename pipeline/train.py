"""Stage `train`: fit one model and log its learning curves, filters and figures to MLflow.

Run as ``pipeline train [--recipe synthetic] [--filters 4] ...`` or
``mlflow run . -e train -P filters=4``. Reads prepared data (``--data-uri``) or builds the
recipe's data set on the fly; writes params, per-epoch ``train_loss``, ``train_accuracy``,
``val_loss``, ``val_accuracy`` (step = epoch), filter images (key ``filters``, step =
epoch), final figures and the model (``runs:/<id>/model``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline import tracking
from pipeline.config import ConfigError, TrainConfig, as_params, resolve
from pipeline.data.bundle import DataBundle, load_bundle
from pipeline.data.io import bundle_from_uri, log_bundle_input
from pipeline.models import build_model, count_parameters, first_conv


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
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(name)


@torch.no_grad()
def evaluate_split(model: nn.Module, X: torch.Tensor, y: torch.Tensor, criterion: nn.Module, task: str,
                   batch_size: int = 0) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    n = X.shape[0]
    bs = batch_size or n
    total_loss, correct = 0.0, 0
    for i in range(0, n, bs):
        out = model(X[i : i + bs])
        total_loss += float(criterion(out, y[i : i + bs])) * min(bs, n - i)
        correct += int(correct_count(out, y[i : i + bs], task))
    model.train(was_training)
    return total_loss / n, correct / n


@dataclass
class History:
    """Per-epoch curves (index 0 = epoch 1)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

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
    for full batch is exactly the loss that the lab prints.
    """
    criterion = make_criterion(cfg.loss)
    optimizer = make_optimizer(cfg, model.parameters())
    X, y = bundle.train.X.to(device), bundle.train.y.to(device)
    Xv, yv = bundle.val.X.to(device), bundle.val.y.to(device)
    n = X.shape[0]
    bs = cfg.batch_size or n
    gen = torch.Generator().manual_seed(cfg.seed)
    history = History()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen).to(device) if bs < n else None
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, n, bs):
            xb, yb = (X, y) if order is None else (X[order[i : i + bs]], y[order[i : i + bs]])
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = criterion(out, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * xb.shape[0]
            correct += correct_count(out.detach(), yb, bundle.task)
        train_loss = float(loss_sum) / n
        if cfg.print_every and (epoch == 1 or epoch % cfg.print_every == 0):
            echo("Epoch %d had training loss %.4f" % (epoch, train_loss))
        val_loss, val_acc = evaluate_split(model, Xv, yv, criterion, bundle.task, batch_size=max(bs, 1000))
        metrics = {
            "train_loss": train_loss,
            "train_accuracy": int(correct) / n,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        for k, v in metrics.items():
            getattr(history, k).append(v)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return history


# --------------------------------------------------------------------------- figures
def log_filter_image(model: nn.Module, step: int) -> None:
    import mlflow

    from pipeline.plots import filter_grid_rgb

    w = first_conv(model).weight.detach().cpu().numpy()
    mlflow.log_image(filter_grid_rgb(w), key="filters", step=step, synchronous=True)


@torch.no_grad()
def log_detector_figures(model: nn.Module, bundle: DataBundle, prefix: str = "figures") -> None:
    """1D detector: X | y_hat | y heatmaps for the training set, and filters beside linear weights."""
    from pipeline import plots

    model = model.eval()
    X = bundle.train.X
    p = torch.sigmoid(model(X)).cpu().numpy()
    fig = plots.heatmaps(
        [("X (training inputs)", X[:, 0].numpy()), ("ŷ = P(pattern)", p), ("y", bundle.train.y.numpy())],
        suptitle="training set: inputs, predictions, targets",
        symmetric=[True, False, False],
    )
    tracking.log_figure(fig, f"{prefix}/train_heatmaps.png")
    fig = plots.filters_and_linear(model.conv.weight.cpu().numpy(), model.linear.weight.cpu().numpy(),
                                   title="filters (rows) and their linear weights")
    tracking.log_figure(fig, f"{prefix}/filters_linear.png")


def log_curves(history: History, prefix: str = "figures") -> None:
    from pipeline.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(history.train_loss) + 1)
    for ax, kind in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, getattr(history, f"train_{kind}"), label="train")
        ax.plot(epochs, getattr(history, f"val_{kind}"), label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.legend()
    axes[0].set_yscale("log")
    fig.tight_layout()
    tracking.log_figure(fig, f"{prefix}/curves.png")


# --------------------------------------------------------------------------- stage
@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    final: dict[str, float]  # last epoch's metrics
    history: History
    model: nn.Module


def load_data(cfg: TrainConfig) -> DataBundle:
    return bundle_from_uri(cfg.data_uri) if cfg.data_uri else load_bundle(cfg)


def run(cfg: TrainConfig, echo: Callable[[str], None] = print) -> TrainResult:
    """Train one model as the (resolved) config says, inside an MLflow run."""
    import mlflow

    cfg = resolve(cfg)
    tracking.configure(cfg.tracking_uri, cfg.experiment_name)
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    bundle = load_data(cfg)
    num_outputs = 1 if bundle.task == "binary" else len(bundle.classes)
    model = build_model(cfg.model, bundle.input_shape, num_outputs, cfg.filters, cfg.kernel_size, seed=cfg.seed)
    model.to(device)
    tags = {"recipe": cfg.recipe, "dataset": bundle.name, "model": cfg.model, "seed": cfg.seed}
    run_name = f"train-{cfg.model}-F{','.join(map(str, cfg.filters))}-k{','.join(map(str, cfg.kernel_size))}-s{cfg.seed}"
    with tracking.stage_run("train", run_name=run_name, tags=tags) as active:
        tracking.log_params_safely(as_params(cfg))
        tracking.log_params_safely({"num_parameters": count_parameters(model), "device": str(device)})
        mlflow.log_dict(dataclasses.asdict(cfg), "config.json")
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
        mlflow.log_dict(history.last(), "final_metrics.json")
        model_uri = tracking.log_model(model, input_example=bundle.train.X[:2].numpy())
        return TrainResult(active.info.run_id, model_uri, history.last(), history, model)


def summary_line(result: TrainResult) -> str:
    return json.dumps({k: round(v, 4) for k, v in result.final.items()})
