"""S seeds of one 2D ConvNet trained as one computation, each as `pipeline train --seed s` trains it.

For every seed s, as in ``train.loop.fit``:
* the initial weights of ``build_model(seed=s)`` (torch.manual_seed(s) just before it);
* each epoch's minibatch order ``torch.randperm(n, generator=g_s)``, g_s =
  ``torch.Generator().manual_seed(s)`` carried over the epochs (rows as stored when one batch
  holds them all), cut into minibatches of ``batch_size``, ``max_batches`` at most;
* the loss of its own minibatch (the mean over its rows) and the recipe's ``torch.optim``
  optimizer, which steps the stacked tensors elementwise, so every slice as its own model;
* per epoch ``train_loss`` (the mean of the minibatch losses before each step, weighted by
  rows), ``train_accuracy``, ``val_loss``, ``val_accuracy`` (eval mode) and ``last_batch_loss``.

The minibatches of all seeds come from one interleaved index (``interleave``): the rows of
minibatch b are ordered (row, seed), so that a gathered chunk is already the grouped
convolution's input ``(B, S·C, H, W)``, with no copy. Seeds are trained in groups
(``group_size``) whose largest activation stays under ``GROUP_BYTES`` (but of ``MIN_GROUP`` seeds at
least), one epoch of each group in turn.

Exactness. Without dropout a seed's result is that of `pipeline train --seed s` up to float
rounding (the grouped convolution sums in another order): in float64 to ~1e-14 after whole
epochs. In float32 the two agree to ~1e-6 over tens of steps, but a recipe that amplifies
rounding (the digits LeNet at lr 0.05, momentum 0.9) can carry a seed elsewhere over 30
epochs, as `pipeline train` itself does with 1 thread against 2. With dropout a seed's
masks come from its own stream (``stacked.mask_generator``), not torch's global one.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from pipeline.capacity.images.stacked import StackedNet, log_softmax
from pipeline.capacity.images.side_by_side import Halted, side_by_side
from pipeline.capacity.images.strategy import Plan, best_time, candidates, choose
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig, check_batch_size
from pipeline.data.bundle import DataBundle, Split
from pipeline.errors import ConfigError
from pipeline.models.conv_arith import trace
from pipeline.train.batching import minibatches, pick_device, place
from pipeline.train.loop import check_channels, check_finite, make_optimizer
from pipeline.models.registry import build_model
from pipeline.train.stage import make_model, model_options

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "last_batch_loss")
# The largest activation of one computation on the CPU: beyond a few MiB it leaves the caches and
# each fresh buffer page-faults (lenet on 28x28, batch 100: 4-8 seeds at once ran 1.4x faster per
# seed than 16). A GPU wants everything at once.
GROUP_BYTES = {"cpu": 8 << 20, "cuda": 1 << 30}
# But never fewer than two seeds per computation: two seeds in one grouped net beat one seed at a time for
# every image recipe's net, even where their activations pass GROUP_BYTES (mnist-rmsprop, 5.4 MiB a seed:
# 146-160 against 222-243 ms per seed-epoch for the loop with the threads split between seeds, 16 seeds,
# 2 threads; four seeds at once ran 154-255).
MIN_GROUP = 2


@dataclass(frozen=True)
class SeedsResult:
    """What training ``seeds`` gave; row i of every array belongs to ``seeds[i]``."""

    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]  # metric (METRICS) -> (S, epochs), as each seed's `train` History
    nets: tuple[StackedNet, ...]  # the final weights, one stacked net per group of seeds
    seconds: float  # wall time of the epochs (scoring the validation split included)
    strategy: str  # how the seeds ran (``strategy.Plan.label``)

    def final(self, metric: str) -> np.ndarray:
        """(S,) the last epoch's value of ``metric``."""
        return self.history[metric][:, -1]

    def model(self, i: int) -> torch.nn.Module:
        """Seed ``seeds[i]``'s final model."""
        for net in self.nets:
            if i < net.size:
                return net.model(i)
            i -= net.size
        raise IndexError(i)

    def num_parameters(self) -> int:
        return self.nets[0].num_parameters()

    def score(self, split: Split, cfg: TrainConfig, bundle: DataBundle) -> tuple[np.ndarray, np.ndarray]:
        """(S,) loss and (S,) accuracy of every seed's final weights on ``split`` (e.g. the test split)."""
        device = self.nets[0].device
        parts = [score(net, split, cfg.loss, bundle.input_transform(device), device, cfg.test_batch_size)
                 for net in self.nets]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def stacked_net(cfg: TrainConfig, bundle: DataBundle, seeds: Sequence[int], device: torch.device,
                channels_last: bool = True) -> StackedNet:
    """The (resolved) config's model for every seed, each initialised as `pipeline train --seed s`."""
    return StackedNet.from_seeds(lambda s: make_model(dataclasses.replace(cfg, seed=s), bundle), seeds, device,
                                 channels_last)


def layers_of(cfg: TrainConfig, bundle: DataBundle) -> torch.nn.Module:
    """The config's model, unchecked and unseeded, built once per shape: for its layers, not to train."""
    return _layers(cfg.model, tuple(bundle.input_shape), tuple(cfg.filters), tuple(cfg.kernel_size),
                   tuple(sorted(model_options(cfg).items())))


@functools.lru_cache(maxsize=64)
def _layers(model: str, input_shape: tuple, filters: tuple, kernel_size: tuple, options: tuple) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # torch's random state untouched
        return build_model(model, input_shape, 1, filters, kernel_size, **dict(options))


def dropout_in(cfg: TrainConfig, bundle: DataBundle) -> str:
    """What in the config's model draws dropout masks ('' when nothing does)."""
    drops = [name for name, m in layers_of(cfg, bundle).named_modules()
             if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)) and m.p > 0]
    return f"{cfg.model} has dropout ({', '.join(drops)})" if drops else ""


def group_size(cfg: TrainConfig, bundle: DataBundle, device: torch.device) -> int:
    """Seeds per computation: as many as keep the largest activation of a minibatch under GROUP_BYTES, at least
    MIN_GROUP."""
    model = layers_of(cfg, bundle)
    shapes = [shape for _, shape in trace(model.features.named_children(), bundle.input_shape, cfg.model)]
    per_seed = 4 * cfg.batch_size * max(c * h * w for c, h, w in [bundle.input_shape, *shapes])
    return max(MIN_GROUP, GROUP_BYTES.get(device.type, GROUP_BYTES["cuda"]) // per_seed)


def interleave(orders: torch.Tensor, batch_size: int) -> torch.Tensor:
    """One index (S·n,) from S row orders (S, n): minibatch b of every seed, its rows ordered (row, seed)."""
    S, n = orders.shape
    full = n // batch_size * batch_size
    head = orders[:, :full].reshape(S, -1, batch_size).permute(1, 2, 0).reshape(-1)  # (batch, row, seed)
    return torch.cat([head, orders[:, full:].T.reshape(-1)])  # the short last minibatch, also (row, seed)


def per_seed_loss(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(S,) each seed's mean loss over its rows: out (S, B, classes), y (S, B).

    The cross entropy is ``stacked.log_softmax`` then the negative log-likelihood of each row's
    class: F.cross_entropy's values, without its slow kernel over a short last axis.
    """
    if loss == "ce":
        out = log_softmax(out)
    elif loss != "nll":
        raise ConfigError(f"the multi-seed trainer trains image classifiers (loss ce or nll), not {loss!r}")
    return -out.gather(2, y.unsqueeze(2)).squeeze(2).mean(dim=1)


def hits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(S,) each seed's rows whose highest output is their class: out (S, B, classes), y (S, B).

    The argmax runs on a contiguous copy: over ``StackedNet``'s output as it is (classes
    strided, see ``_linear``) it took 90 us a minibatch, ten times the copy and the argmax.
    """
    return (out.contiguous().argmax(dim=-1) == y).sum(dim=1)


@torch.no_grad()
def score(net: StackedNet, split: Split, loss: str, transform: Callable, device: torch.device,
          rows_per_model: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(S,) mean loss and (S,) accuracy of every seed on a whole split, in eval mode.

    Every seed sees the same rows; ``rows_per_model`` rows for one model are scored at
    once, so rows_per_model / S for S seeds (the same memory as scoring one model).
    """
    was_training = net.training
    net.eval()
    X, y = place(split.X, device), place(split.y, device)
    total = torch.zeros(net.size, dtype=torch.float64, device=device)  # float64: a whole split's sum
    correct = torch.zeros(net.size, dtype=torch.long, device=device)
    for xb, yb in minibatches(X, y, max(1, rows_per_model // net.size), device, transform):
        out = net(xb)  # (S, B, classes)
        ys = yb.expand(net.size, -1)
        total += per_seed_loss(loss, out, ys).double() * yb.shape[0]
        correct += hits(out, ys)
    net.train(was_training)
    n = X.shape[0]
    return (total / n).cpu().numpy(), correct.cpu().numpy() / n


class _Group:
    """One computation: a group of seeds with their stacked net, optimizer and batch-order generators."""

    def __init__(self, cfg: TrainConfig, bundle: DataBundle, seeds: tuple[int, ...], device: torch.device,
                 plan: Plan):
        self.cfg, self.device = cfg, device
        self.net = stacked_net(cfg, bundle, seeds, device, plan.channels_last)
        self.net.functional = plan.name == "vmap"
        self.optimizer = make_optimizer(cfg, self.net.parameters())
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.halt: threading.Event | None = None  # set: the epoch stops at its next minibatch (``side_by_side``)

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on (B, S·C, H, W) rows and (S, B) targets: the (S, B, classes) outputs and (S,) losses."""
        self.optimizer.zero_grad(set_to_none=True)
        out = self.net(xb)  # (S, B, classes)
        losses = per_seed_loss(self.cfg.loss, out, yb)  # (S,)
        losses.sum().backward()  # seeds share no parameter: each gets the gradient of its own loss
        self.optimizer.step()
        return out.detach(), losses.detach()

    def epoch(self, X: torch.Tensor, y: torch.Tensor, transform: Callable) -> dict[str, np.ndarray]:
        """One pass over the training rows; the epoch's training metrics per seed."""
        cfg, net, S, n = self.cfg, self.net, self.net.size, X.shape[0]
        bs = min(cfg.batch_size, n)
        if bs < n:
            orders = torch.stack([torch.randperm(n, generator=g) for g in self.gens])  # (S, n)
        else:  # one batch holds the split: rows as stored, nothing drawn (as `fit`)
            orders = torch.arange(n).expand(S, n)
        loss_sum = torch.zeros(S, device=self.device)
        correct = torch.zeros(S, dtype=torch.long, device=self.device)
        seen = 0
        net.train()
        for xb, yb in minibatches(X, y, S * bs, self.device, transform, interleave(orders, bs).to(X.device),
                                  cfg.max_batches):
            if self.halt is not None and self.halt.is_set():
                raise Halted
            B = yb.shape[0] // S
            xb, yb = xb.view(B, -1, *xb.shape[2:]), yb.view(B, S).T  # (B, S·C, H, W), (S, B)
            out, losses = self.step(xb, yb)
            loss_sum += losses * B
            correct += hits(out, yb)
            seen += B
        return {"train_loss": loss_sum.cpu().numpy().astype(np.float64) / seen,
                "train_accuracy": correct.cpu().numpy() / seen, "last_batch_loss": losses.cpu().numpy()}


def train_seeds(cfg: TrainConfig, bundle: DataBundle, seeds: Sequence[int], device: torch.device | None = None,
                on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None = None,
                seeds_at_once: int = 0, strategy: str = "auto") -> SeedsResult:
    """Train the config's model from every seed in ``seeds`` on ``bundle``, the seeds run as ``strategy`` says.

    ``on_epoch(epoch, metrics)`` gets each metric as an (S,) array after every epoch.
    ``seeds_at_once`` caps a computation's seeds (0: ``group_size``); ``strategy`` is one of
    ``strategy.STRATEGIES`` (auto: the fastest per seed, measured on the first minibatch).
    """
    cfg = resolve(cfg)
    check_batch_size(cfg.batch_size, bundle.name)
    check_channels(cfg.in_channels, bundle, f"{cfg.model} (--in-channels {cfg.in_channels}, recipe {cfg.recipe})")
    if bundle.train.X.ndim != 4:
        raise ConfigError(f"the multi-seed image trainer needs images (N, C, H, W); {bundle.name} is not")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("need at least one seed")
    device = device or pick_device(cfg.device)
    transform = bundle.input_transform(device)
    X, y = place(bundle.train.X, device), place(bundle.train.y, device)
    plan = pick_plan(cfg, bundle, seeds, device, min(len(seeds), seeds_at_once or group_size(cfg, bundle, device)),
                     strategy, (X, y, transform))
    size = plan.seeds_at_once
    groups = [_Group(cfg, bundle, seeds[i : i + size], device, plan)
              for i in range(0, len(seeds), size)]
    history = {k: np.empty((len(seeds), cfg.epochs)) for k in METRICS}
    t0 = time.perf_counter()
    with side_by_side(groups, plan.split) as each:
        for epoch in range(1, cfg.epochs + 1):
            parts = each(lambda g: {**g.epoch(X, y, transform), **dict(zip(
                ("val_loss", "val_accuracy"), score(g.net, bundle.val, cfg.loss, transform, device,
                                                    cfg.test_batch_size)))})
            values = {k: np.concatenate([p[k] for p in parts]) for k in METRICS}
            _check_finite(values["train_loss"], seeds, epoch, cfg)
            for k, v in values.items():
                history[k][:, epoch - 1] = v
            if on_epoch is not None:
                on_epoch(epoch, values)
    return SeedsResult(seeds, history, tuple(g.net for g in groups), time.perf_counter() - t0, plan.label)


def _check_finite(losses: np.ndarray, seeds: tuple[int, ...], epoch: int, cfg: TrainConfig) -> None:
    """A seed whose loss diverged ends the study as it ends `pipeline train --seed s` (NonFiniteLoss, exit 2)."""
    bad = [i for i, v in enumerate(losses) if not np.isfinite(v)]
    if bad:
        more = f" (and {len(bad) - 1} other seed{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        check_finite(float(losses[bad[0]]), epoch, cfg, f" of seed {seeds[bad[0]]}{more}")


def pick_plan(cfg: TrainConfig, bundle: DataBundle, seeds: tuple[int, ...], device: torch.device, group: int,
              strategy: str, data: tuple[torch.Tensor, torch.Tensor, Callable]) -> Plan:
    """The plan of ``strategy`` (``strategy.choose``): a candidate's time is one step on the first rows."""
    X, y, transform = data
    bs = min(cfg.batch_size, X.shape[0])

    def step_time(plan: Plan) -> float:
        trial = _Group(cfg, bundle, seeds[: plan.seeds_at_once], device, plan)  # thrown away
        S = plan.seeds_at_once
        rows = torch.arange(S * bs, device=X.device) % X.shape[0]
        xb = transform(X.index_select(0, rows).to(device)).view(bs, -1, *X.shape[2:])  # (B, S·C, H, W)
        yb = y.index_select(0, rows).to(device).view(bs, S).T  # (S, B)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        return best_time(lambda: (trial.step(xb, yb), sync()))

    shapes = (repr(bundle.input_shape), cfg.model, tuple(cfg.filters), tuple(cfg.kernel_size), cfg.padding,
              cfg.batch_norm, cfg.dropout, cfg.optimizer, bs, len(seeds), str(device))
    split = device.type == "cpu" and torch.get_num_threads() > 1 and len(seeds) > 1
    return choose(candidates(strategy, group, dropout_in(cfg, bundle), split), shapes, step_time,
                  measure=device.type != "cpu")
