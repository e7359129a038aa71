"""The training loop of one model, and scoring a whole split: what `train` and the sweep's
accuracy trials run.

The data lives as tensors (on the GPU when it fits) and minibatches are index
permutations of them: no DataLoader, no per-sample Python.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig, check_batch_size, check_loss
from pipeline.data.bundle import DataBundle
from pipeline.errors import ConfigError, NonFiniteLoss
from pipeline.train.batching import minibatches, place
from pipeline.train.progress import EpochBar
from pipeline.train.sgd import SGD


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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer | SGD:
    momentum, weight_decay = cfg.momentum or 0.0, cfg.weight_decay or 0.0
    params = list(params)
    if cfg.optimizer == "sgd" and all(p.device.type == "cpu" for p in params):  # same numbers, no torch._dynamo
        return SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=weight_decay)
    if cfg.optimizer == "sgd":  # accelerators: torch's foreach kernels
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
    progress: bool = False,
) -> History:
    """The training loop for one model: one pass per epoch over shuffled minibatches.

    With ``batch_size`` 0 it is the lab's full-batch loop (one step per epoch). The
    epoch's ``train_loss`` is the mean of its minibatch losses before each step, which
    for full batch is exactly the loss that the lab prints. Losses and counts stay on the
    device; the only host syncs are the epoch's end and the ``log_interval`` prints
    (and, with ``progress`` on a terminal, the bar's loss twice a second).
    """
    cfg = resolve(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_loss(cfg.loss, bundle.task)
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
        bar = EpochBar(epoch, cfg.epochs, n_batches, progress)
        for b, (xb, yb) in enumerate(minibatches(X, y, bs, device, transform, order, cfg.max_batches)):
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = criterion(out, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * xb.shape[0]
            correct += correct_count(out.detach(), yb, bundle.task)
            seen += xb.shape[0]
            bar.step(loss)
            if log_interval and b % log_interval == 0:  # the labs' script's progress line
                bar.echo(echo, f"Train Epoch: {epoch} [{b * bs}/{n} ({100.0 * b / n_batches:.0f}%)]\t"
                               f"Loss: {loss.item():.6f}")
        bar.close()
        train_loss = float(loss_sum) / seen
        if not math.isfinite(train_loss):  # diverged: the run must not end FINISHED with NaN weights
            raise NonFiniteLoss(f"the training loss became {train_loss} at epoch {epoch} (--lr {cfg.lr:g}, "
                                f"--optimizer {cfg.optimizer}): training diverged; lower --lr")
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


def check_channels(expected: int | None, bundle: DataBundle, what: str = "the model") -> None:
    """A model for ``expected``-channel images must not meet data of another channel count."""
    c = bundle.input_shape[0]
    if bundle.train.X.ndim == 4 and expected is not None and expected != c:
        raise ConfigError(f"{what} expects {expected}-channel images, but {bundle.name} has {c} "
                          f"channel{'s' * (c > 1)} ({'x'.join(map(str, bundle.input_shape))})")
