"""The training loop of one model, and scoring a whole split: what `train` and the sweep's
accuracy trials run.

The data lives as tensors (on the GPU when it fits) and minibatches are index
permutations of them: no DataLoader, no per-sample Python.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig, check_batch_size, check_loss
from pipeline.data.bundle import DataBundle
from pipeline.errors import ConfigError, Interrupted, NonFiniteLoss, check_interrupt, deferred_interrupts
from pipeline.train.batching import minibatches, place
from pipeline.train.checkpoint import Checkpoints, Position, Schedule, capture, restore
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
    checkpoints: Checkpoints | None = None,
) -> History:
    """The training loop for one model: one pass per epoch over shuffled minibatches.

    With ``batch_size`` 0 it is the lab's full-batch loop (one step per epoch). The
    epoch's ``train_loss`` is the mean of its minibatch losses before each step, which
    for full batch is exactly the loss that the lab prints. Losses and counts stay on the
    device; the only host syncs are the epoch's end and the ``log_interval`` prints
    (and, with ``progress`` on a terminal, the bar's loss twice a second). With
    ``checkpoints``, a signal stops the loop between minibatches, which hands its state to
    ``checkpoints.save`` (as it does on schedule), and ``checkpoints.start`` continues one.
    """
    cfg = resolve(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_loss(cfg.loss, bundle.task)
    criterion, optimizer = make_criterion(cfg.loss), make_optimizer(cfg, model.parameters())
    pos, history = Position(torch.Generator().manual_seed(cfg.seed)), History()
    if checkpoints is not None and checkpoints.start is not None:
        history = History(**restore(checkpoints.start, pos, model, optimizer, device))
    schedule = Schedule(checkpoints.every if checkpoints is not None else "1")
    data = _Split(bundle, cfg, device)
    model.train()
    with deferred_interrupts() if checkpoints is not None else contextlib.nullcontext():
        try:
            while pos.epoch < cfg.epochs:
                metrics = _epoch(model, data, pos, cfg, criterion, optimizer, echo, progress)
                for k, v in metrics.items():
                    getattr(history, k).append(v)
                pos.next_epoch()
                if on_epoch is not None:
                    on_epoch(pos.epoch, metrics)
                check_interrupt()
                if checkpoints is not None and pos.epoch < cfg.epochs and schedule.due(pos.epoch):
                    checkpoints.save(capture(pos, model, optimizer, history), False)
                    schedule.done()
        except Interrupted as err:
            if checkpoints is not None:
                checkpoints.save(capture(pos, model, optimizer, history), True)
                err.resume_hint = checkpoints.resume
            raise
    return history


class _Split:
    """The training and validation data on the device, and the sizes of an epoch."""

    def __init__(self, bundle: DataBundle, cfg: TrainConfig, device: torch.device):
        self.task, self.device = bundle.task, device
        self.transform = bundle.input_transform(device)
        self.X, self.y = place(bundle.train.X, device), place(bundle.train.y, device)
        self.Xv, self.yv = place(bundle.val.X, device), place(bundle.val.y, device)
        self.n, self.bs = self.X.shape[0], cfg.batch_size or self.X.shape[0]
        self.n_batches = math.ceil(self.n / self.bs)
        if cfg.max_batches:
            self.n_batches = min(cfg.max_batches, self.n_batches)

    def batches(self, pos: Position) -> Any:
        """The minibatches of the epoch from ``pos.batch`` on, in its order (drawn now at its start)."""
        if pos.batch == 0 and pos.order is None and self.bs < self.n:
            pos.order = torch.randperm(self.n, generator=pos.gen).to(self.X.device)
        if pos.batch >= self.n_batches:
            return iter(())
        order = None if pos.order is None else pos.order[pos.batch * self.bs:].to(self.X.device)
        return minibatches(self.X, self.y, self.bs, self.device, self.transform, order,
                           self.n_batches - pos.batch if order is not None else 0)


def _epoch(model: nn.Module, data: _Split, pos: Position, cfg: TrainConfig, criterion: Any, optimizer: Any,
           echo: Callable[[str], None], progress: bool) -> dict[str, float]:
    """The rest of epoch ``pos.epoch + 1`` (all of it unless resumed inside it), then its validation score."""
    epoch = pos.epoch + 1
    bar = EpochBar(epoch, cfg.epochs, data.n_batches, progress)
    say = _progress_line(cfg, epoch, data.bs, data.n, data.n_batches, bar, echo)
    train_loss, train_acc, last_loss = _one_epoch(model, data.batches(pos), criterion, optimizer, data.task,
                                                  data.device, bar, say, pos)
    check_finite(train_loss, epoch, cfg)
    if cfg.print_every and (epoch == 1 or epoch % cfg.print_every == 0):
        echo("Epoch %d had training loss %.4f" % (epoch, train_loss))
    val_loss, val_acc = evaluate_split(model, data.Xv, data.yv, criterion, data.task, batch_size=cfg.test_batch_size,
                                       transform=data.transform, device=data.device)
    metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc}
    if data.n_batches > 1:
        metrics["last_batch_loss"] = last_loss
    if cfg.log_interval:
        echo(f"Epoch {epoch}: final minibatch loss {last_loss:.4f}; validation set: average loss "
             f"{val_loss:.4f}, accuracy {round(val_acc * len(data.Xv))}/{len(data.Xv)} ({100.0 * val_acc:.0f}%)")
    return metrics


def check_finite(train_loss: float, epoch: int, cfg: TrainConfig, whose: str = "") -> None:
    """A diverged loss ends the stage: the run must not end FINISHED with NaN weights. ``whose``: " of seed 3"."""
    if not math.isfinite(train_loss):
        raise NonFiniteLoss(f"the training loss{whose} became {train_loss} at epoch {epoch} (--lr {cfg.lr:g}, "
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
               bar: Any, say: Callable[[int, Any], None], pos: Position) -> tuple[float, float, float]:
    """The epoch's ``batches``: (mean loss before each step, accuracy, last minibatch's loss).

    Losses and counts stay on the device until the epoch ends (one host sync); they are kept in
    ``pos.sums``, with ``pos.batch``, so that a checkpoint taken between two minibatches holds them."""
    sums = pos.sums
    if not sums:
        sums.update(loss_sum=torch.zeros((), device=device), correct=torch.zeros((), device=device, dtype=torch.long),
                    seen=0, last_loss=None)
    for xb, yb in batches:
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = criterion(out, yb)
        loss.backward()
        optimizer.step()
        sums["loss_sum"] += loss.detach() * xb.shape[0]
        sums["correct"] += correct_count(out.detach(), yb, task)
        sums["seen"] += xb.shape[0]
        sums["last_loss"] = loss.detach()
        pos.batch += 1
        bar.step(loss)
        say(pos.batch - 1, loss)
        check_interrupt()
    bar.close()
    return float(sums["loss_sum"]) / sums["seen"], int(sums["correct"]) / sums["seen"], float(sums["last_loss"])


def check_channels(expected: int | None, bundle: DataBundle, what: str = "the model") -> None:
    """A model for ``expected``-channel images must not meet data of another channel count."""
    c = bundle.input_shape[0]
    if bundle.train.X.ndim == 4 and expected is not None and expected != c:
        raise ConfigError(f"{what} expects {expected}-channel images, but {bundle.name} has {c} "
                          f"channel{'s' * (c > 1)} ({'x'.join(map(str, bundle.input_shape))})")
