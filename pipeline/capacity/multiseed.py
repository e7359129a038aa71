"""Many initialisation seeds of the 1D detector trained at once, for the capacity study.

``train_seeds(F, k, seeds, X, y)`` runs the same experiment as ``pipeline train --seed s``
for every seed s (the same initial weights; full-batch SGD with momentum and weight decay
on BCE-with-logits), as one computation with a hand-written forward and backward.
``train_configs`` does the same for several filter counts at once.

Why it is fast: the model is tiny, so per-op overhead and memory traffic dominate. The
forward and backward work on distinct windows and row groups (``kernel.py``), and
``sgd_epochs`` runs them on one of two engines: on the CPU the compiled loop of ``fused.py``
(numba; a tile of seeds at a time stays in the L1 cache for all its epochs, tiles split
over the stage's threads), elsewhere torch's ops of ``kernel.py`` with units (model,
filter) as columns. The step is torch.optim.SGD's: ``d = g + wd·p; buf = m·buf + d``
(``buf = d`` at step 1); ``p -= lr·buf`` (the torch engine calls ``train.sgd.sgd_update``, the
compiled one rounds each product and sum on its own).

Exactness. In float64 the whole 500-epoch trajectory matches torch's to ~1e-15 on either
engine. In float32 the two sum in different orders, so they differ by rounding (~1e-7, no
further from the float64 path than torch's own float32 run); usually that stays so (tested
to 1e-4 on the final loss), but about one seed in a hundred passes so close to a switch
(which window is the max, whether a ReLU is on) that the rounding picks the path, and the
losses part by up to ~2e-3. Torch's float32 run does the same against its float64 run on
other seeds (F=5, k=5, seed 4: by 1e-5, where this code stays with float64).
Exact float ties for the maximum do happen (two shifts of a bump can give the same
pre-activation); torch's max pool then routes the gradient to the first position, so each
group lists its windows in order of first appearance along the row and a tie goes to the
first of them. On the compiled engine a seed's weights and loss are the same bits whatever
else is batched beside it (other seeds, other filter counts, other thread counts); on the
torch engine batching changes a result by rounding (reductions vectorise differently with
the batch width).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Sequence

import numpy as np
import torch

from pipeline.capacity.initial import initial_weights
from pipeline.capacity.kernel import Batch, WindowIndex, Workspace, accuracy, backward, forward, mean_bce
from pipeline.errors import ConfigError
from pipeline.train.sgd import sgd_update


# --------------------------------------------------------------------------- training
ENGINES = ("auto", "fused", "torch")


@dataclass(frozen=True)
class MultiSeedResult:
    """Per-seed outcome of one configuration; row i belongs to ``seeds[i]``."""

    filters: int
    kernel_size: int
    seeds: tuple[int, ...]
    final_loss: np.ndarray  # (S,) training loss of the last epoch, before its step (as `pipeline train` logs it)
    train_accuracy: np.ndarray  # (S,) training accuracy of the last epoch, before its step (as `train`)
    test_accuracy: np.ndarray | None  # (S,) accuracy of the final weights on (X_test, y_test)
    history: np.ndarray | None  # (S, T) training loss at ``history_epochs``
    history_epochs: np.ndarray | None  # (T,) 1-based epochs of the history columns
    conv_weight: torch.Tensor  # (S, F, 1, k) final weights
    conv_bias: torch.Tensor  # (S, F)
    linear_weight: torch.Tensor  # (S, 1, F)
    linear_bias: torch.Tensor  # (S, 1)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Final weights of ``seeds[i]``, loadable into ``Detector1d(F, k)``."""
        return {"conv.weight": self.conv_weight[i].clone(), "conv.bias": self.conv_bias[i].clone(),
                "linear.weight": self.linear_weight[i].clone(), "linear.bias": self.linear_bias[i].clone()}


def train_seeds(filters: int, kernel_size: int, seeds: Sequence[int], X: torch.Tensor, y: torch.Tensor,
                **options: Any) -> MultiSeedResult:
    """Train ``Detector1d(filters, kernel_size)`` from every seed in ``seeds`` on (X, y) at once.

    ``options`` are those of ``train_configs`` (optimizer settings, epochs, history, test set,
    device, dtype).
    """
    return train_configs([(filters, kernel_size)], seeds, X, y, **options)[0]


def train_configs(
    configs: Sequence[tuple[int, int]],
    seeds: Sequence[int],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    epochs: int = 500,
    history_every: int = 0,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    on_record: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    engine: str = "auto",
) -> list[MultiSeedResult]:
    """Train ``Detector1d(F, k)`` for each (F, k) in ``configs`` from every seed, one result each.

    X is (N, 1, W) or (N, W); y is (N, 1) or (N,) in {0, 1}. ``history_every`` = n > 0
    records the training loss at epoch 1, every n-th epoch and the last epoch, and calls
    ``on_record(epoch, loss, accuracy)`` there with every model's training loss and accuracy
    so far (models in the order of ``configs``, seeds within; an exception it raises stops
    the training, e.g. Optuna's pruning). ``dtype`` float64 is for checks: it tells float32
    rounding apart from a real difference. ``engine``: ``sgd_epochs``' (auto: compiled on the CPU).

    Configurations with the same kernel size share one computation. On the compiled engine a
    seed's result is that of training it alone, bit for bit; on the torch engine it agrees up
    to float rounding (how a reduction is vectorised depends on the batch width), so callers
    there that must reproduce each other exactly should batch the same way
    (``outcomes.seed_table`` is that one way).
    """
    seeds = tuple(int(s) for s in seeds)
    configs = [(int(f), int(k)) for f, k in configs]
    _check(configs, seeds, epochs, X_test is None, y_test is None)
    device = torch.device(device)
    results: dict[tuple[int, int], MultiSeedResult] = {}
    for k in sorted({k for _, k in configs}):
        filters = list(dict.fromkeys(f for f, kk in configs if kk == k))
        out = _train_kernel(filters, k, seeds, X, y, lr=lr, momentum=momentum, weight_decay=weight_decay,
                            epochs=epochs, history_every=history_every, X_test=X_test, y_test=y_test,
                            device=device, dtype=dtype, on_record=on_record, engine=engine)
        results.update({(r.filters, k): r for r in out})
    return [results[c] for c in configs]


def _check(configs: list[tuple[int, int]], seeds: tuple[int, ...], epochs: int, no_X_test: bool,
           no_y_test: bool) -> None:
    """``train_configs``' arguments, refused in one line each."""
    if not seeds:
        raise ConfigError("need at least one seed")
    for f, k in configs:
        if f < 1 or k < 1 or k % 2 == 0:
            raise ConfigError(f"need filters >= 1 and an odd kernel size, got F={f}, k={k}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if no_X_test != no_y_test:
        raise ConfigError("give both X_test and y_test, or neither")


def stack_initial(filters: Sequence[int], k: int, seeds: Sequence[int], device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, Batch]:
    """The initial weights of every (F, seed) of ``filters`` x ``seeds`` as one batch, config-major:
    units (k + 2, U), linear biases (len(filters)·S,) and the layout (model m = i·S + seed index)."""
    S = len(seeds)
    parts = [initial_weights(f, k, seeds) for f in filters]
    units = torch.cat([u for u, _ in parts], dim=1).to(device, dtype)  # (k + 2, U)
    const = torch.cat([c for _, c in parts]).to(device, dtype)  # (models,)
    owner = torch.cat([torch.arange(S).repeat_interleave(f) + i * S for i, f in enumerate(filters)])
    return units, const, Batch(k=k, model_of_unit=owner.to(device), models=len(filters) * S)


def engine_of(device: str | torch.device) -> str:
    """What ``auto`` runs on ``device``: the compiled loop on the CPU, torch's ops elsewhere."""
    return "fused" if torch.device(device).type == "cpu" else "torch"


def sgd_epochs(units: torch.Tensor, const: torch.Tensor, index: WindowIndex, batch: Batch, *, lr: float,
               momentum: float, weight_decay: float, epochs: int, bufs: Sequence[torch.Tensor] | None = None,
               on_epoch: Callable | None = None, look_at: Collection[int] | None = None,
               engine: str = "auto") -> list[torch.Tensor]:
    """``epochs`` full-batch SGD steps on (units, const), in place; returns the momentum buffers.

    ``bufs`` continues an optimizer's state (None: a fresh one, ``buf = d`` at its first step).
    ``on_epoch(epoch, logits, grad_units, grad_const)`` sees the logits and loss gradient of the
    epochs in ``look_at`` (None: every epoch), before weight decay and the step (``units`` and
    ``const`` still hold that epoch's weights): the one place a caller looks inside the loop.

    ``engine``: ``fused`` runs the compiled loop of ``fused.py`` (the CPU's, what ``auto`` picks
    there), ``torch`` the tensor ops of ``kernel.py`` (any device; what ``auto`` picks elsewhere).
    Both follow one seed as ``pipeline train --seed s`` does, within float rounding.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if (engine_of(units.device) if engine == "auto" else engine) == "fused":
        from pipeline.capacity import fused

        return fused.sgd_epochs(units, const, index, batch, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                epochs=epochs, bufs=bufs, on_epoch=on_epoch, look_at=look_at)
    params, grads = [units, const], [torch.empty_like(units), None]
    bufs = [b.clone() for b in bufs] if bufs else [None, None]
    ws = Workspace(index, units)
    watched = None if look_at is None else set(look_at)
    with torch.no_grad():
        for epoch in range(1, epochs + 1):
            fwd = forward(units, const, index, batch, ws)
            grads[1] = backward(units, index, batch, fwd, grads[0])
            if on_epoch is not None and (watched is None or epoch in watched):
                on_epoch(epoch, fwd[0], grads[0], grads[1])
            sgd_update(params, grads, bufs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                       grads_are_scratch=True)  # both gradients are this epoch's own tensors
    return [b for b in bufs if b is not None]


def _train_kernel(filters: list[int], k: int, seeds: tuple[int, ...], X, y, *, lr, momentum, weight_decay,
                  epochs, history_every, X_test, y_test, device, dtype, on_record=None,
                  engine="auto") -> list[MultiSeedResult]:
    """One computation for all filter counts in ``filters`` with kernel size ``k``."""
    index = WindowIndex.cached(X, y, k).to(device, dtype)
    S = len(seeds)
    units, const, batch = stack_initial(filters, k, seeds, device, dtype)
    record = _history_epochs(epochs, history_every)
    history = torch.empty(len(record), batch.models, device=device, dtype=dtype) if record else None
    last: dict[str, np.ndarray] = {}

    def on_epoch(epoch, logits, *_):
        if history is not None and epoch in record:
            history[record.index(epoch)] = mean_bce(logits, index)
            if on_record is not None:
                on_record(epoch, history[record.index(epoch)].cpu().numpy(), accuracy(logits, index))
        if epoch == epochs:
            last.update(loss=mean_bce(logits, index).cpu().numpy(), accuracy=accuracy(logits, index))

    sgd_epochs(units, const, index, batch, lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs,
               on_epoch=on_epoch, look_at={*record, epochs}, engine=engine)
    final_loss, train_acc = last["loss"], last["accuracy"]
    with torch.no_grad():
        test_acc = None
        if X_test is not None:
            test_index = WindowIndex.cached(X_test, y_test, k).to(device, dtype)
            test_acc = accuracy(forward(units, const, test_index, batch)[0], test_index)
    units, const = units.cpu(), const.cpu()
    out, start = [], 0
    for i, f in enumerate(filters):
        u = units[:, start : start + S * f].reshape(k + 2, S, f)
        start += S * f
        rows = slice(i * S, (i + 1) * S)
        out.append(MultiSeedResult(
            filters=f,
            kernel_size=k,
            seeds=seeds,
            final_loss=final_loss[rows].copy(),
            train_accuracy=train_acc[rows].copy(),
            test_accuracy=None if test_acc is None else test_acc[rows].copy(),
            history=None if history is None else history[:, rows].T.cpu().numpy().copy(),
            history_epochs=np.asarray(record) if record else None,
            conv_weight=u[:k].permute(1, 2, 0).unsqueeze(2).contiguous(),
            conv_bias=u[k].contiguous(),
            linear_weight=u[k + 1].unsqueeze(1).contiguous(),
            linear_bias=const[rows].unsqueeze(1).clone(),
        ))
    return out


def _history_epochs(epochs: int, every: int) -> list[int]:
    """Epoch 1, every ``every``-th epoch and the last one (as the lab prints them)."""
    if every <= 0:
        return []
    return sorted({1, epochs, *range(every, epochs + 1, every)})
