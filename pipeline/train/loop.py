"""The training loop of one model, and scoring a whole split: what `train` and the sweep's
accuracy trials run.

The data lives as tensors (on the GPU when it fits) and minibatches are index
permutations of them: no DataLoader, no per-sample Python.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

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
    criterion, optimizer = make_criterion(cfg.loss), make_optimizer(cfg, model.parameters())
    transform = bundle.input_transform(device)
    X, y = place(bundle.train.X, device), place(bundle.train.y, device)
    Xv, yv = place(bundle.val.X, device), place(bundle.val.y, device)
    n, bs = X.shape[0], cfg.batch_size or X.shape[0]
    n_batches = math.ceil(n / bs) if not cfg.max_batches else min(cfg.max_batches, math.ceil(n / bs))
    gen, history = torch.Generator().manual_seed(cfg.seed), History()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen).to(X.device) if bs < n else None
        bar = EpochBar(epoch, cfg.epochs, n_batches, progress)
        batches = minibatches(X, y, bs, device, transform, order, cfg.max_batches)
        train_loss, train_acc, last_loss = _one_epoch(model, batches, criterion, optimizer, bundle.task, device, bar,
                                                      _progress_line(cfg, epoch, bs, n, n_batches, bar, echo))
        check_finite(train_loss, epoch, cfg)
        if cfg.print_every and (epoch == 1 or epoch % cfg.print_every == 0):
            echo("Epoch %d had training loss %.4f" % (epoch, train_loss))
        val_loss, val_acc = evaluate_split(model, Xv, yv, criterion, bundle.task, batch_size=cfg.test_batch_size,
                                           transform=transform, device=device)
        metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc}
        if n_batches > 1:
            metrics["last_batch_loss"] = last_loss
        if cfg.log_interval:
            echo(f"Epoch {epoch}: final minibatch loss {last_loss:.4f}; validation set: average loss "
                 f"{val_loss:.4f}, accuracy {round(val_acc * len(Xv))}/{len(Xv)} ({100.0 * val_acc:.0f}%)")
        for k, v in metrics.items():
            getattr(history, k).append(v)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return history


def check_finite(train_loss: float, epoch: int, cfg: TrainConfig) -> None:
    """A diverged loss ends the stage: the run must not end FINISHED with NaN weights."""
    if not math.isfinite(train_loss):
        raise NonFiniteLoss(f"the training loss became {train_loss} at epoch {epoch} (--lr {cfg.lr:g}, "
                            f"--optimizer {cfg.optimizer}): training diverged; lower --lr")


def _progress_line(cfg: TrainConfig, epoch: int, bs: int, n: int, n_batches: int, bar: Any,
                   echo: Callable[[str], None]) -> Callable[[int, Any], None]:
    """Echoes the labs' script's progress line after every ``log_interval``-th minibatch ``b``."""
    def say(b: int, loss: Any) -> None:
        if cfg.log_interval and b % cfg.log_interval == 0:
            bar.echo(echo, f"Train Epoch: {epoch} [{b * bs}/{n} ({100.0 * b / n_batches:.0f}%)]\t"
                           f"Loss: {loss.item():.6f}")

    return say


def _one_epoch(model: nn.Module, batches: Any, criterion: Any, optimizer: Any, task: str, device: torch.device,
               bar: Any, say: Callable[[int, Any], None]) -> tuple[float, float, float]:
    """One pass over ``batches``: (mean loss before each step, accuracy, last minibatch's loss).

    Losses and counts stay on the device until the epoch ends (one host sync)."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for b, (xb, yb) in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = criterion(out, yb)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * xb.shape[0]
        correct += correct_count(out.detach(), yb, task)
        seen += xb.shape[0]
        bar.step(loss)
        say(b, loss)
    bar.close()
    return float(loss_sum) / seen, int(correct) / seen, float(loss.detach())


def check_channels(expected: int | None, bundle: DataBundle, what: str = "the model") -> None:
    """A model for ``expected``-channel images must not meet data of another channel count."""
    c = bundle.input_shape[0]
    if bundle.train.X.ndim == 4 and expected is not None and expected != c:
        raise ConfigError(f"{what} expects {expected}-channel images, but {bundle.name} has {c} "
                          f"channel{'s' * (c > 1)} ({'x'.join(map(str, bundle.input_shape))})")
