"""Many initialisation seeds of the 1D detector trained at once, for the capacity study.

``train_seeds(F, k, seeds, X, y)`` runs the same experiment as ``pipeline train --seed s``
for every seed s (the same initial weights; full-batch SGD with momentum and weight decay
on BCE-with-logits), as one computation with a hand-written forward and backward.
``train_configs`` does the same for several filter counts at once.

Why it is fast: the model is tiny, so per-op overhead and memory traffic dominate. The
forward and backward work on distinct windows and row groups (``windows.py``), and
``sgd_epochs`` runs them on one of two engines: on the CPU the compiled loop of ``fused.py``
(numba; a tile of seeds at a time stays in the L1 cache for all its epochs, tiles split
over the stage's threads; numpy arrays, no torch loaded), elsewhere torch's ops of
``kernel.py`` with units (model, filter) as columns. The step is torch.optim.SGD's: ``d = g + wd·p; buf = m·buf + d``
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
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

import numpy as np

from pipeline.capacity.initial import initial_weights, stack_arrays, stack_initial  # noqa: F401 - ms.* as before
from pipeline.capacity.windows import Batch, WindowIndex, accuracy, host
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch


# --------------------------------------------------------------------------- training
ENGINES = ("auto", "fused", "torch")


@dataclass(frozen=True)
class MultiSeedResult:
    """Per-seed outcome of one configuration; row i belongs to ``seeds[i]``. Weights are numpy arrays."""

    filters: int
    kernel_size: int
    seeds: tuple[int, ...]
    final_loss: np.ndarray  # (S,) training loss of the last epoch, before its step (as `pipeline train` logs it)
    train_accuracy: np.ndarray  # (S,) training accuracy of the last epoch, before its step (as `train`)
    test_accuracy: np.ndarray | None  # (S,) accuracy of the final weights on (X_test, y_test)
    history: np.ndarray | None  # (S, T) training loss at ``history_epochs``
    history_epochs: np.ndarray | None  # (T,) 1-based epochs of the history columns
    conv_weight: np.ndarray  # (S, F, 1, k) final weights
    conv_bias: np.ndarray  # (S, F)
    linear_weight: np.ndarray  # (S, 1, F)
    linear_bias: np.ndarray  # (S, 1)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Final weights of ``seeds[i]`` as torch tensors, loadable into ``Detector1d(F, k)``."""
        import torch

        return {name: torch.from_numpy(np.array(a[i])) for name, a in (
            ("conv.weight", self.conv_weight), ("conv.bias", self.conv_bias),
            ("linear.weight", self.linear_weight), ("linear.bias", self.linear_bias))}


def train_seeds(filters: int, kernel_size: int, seeds: Sequence[int], X: Any, y: Any,
                **options: Any) -> MultiSeedResult:
    """Train ``Detector1d(filters, kernel_size)`` from every seed in ``seeds`` on (X, y) at once.

    ``options`` are those of ``train_configs`` (optimizer settings, epochs, history, test set,
    device, dtype, engine, threads).
    """
    return train_configs([(filters, kernel_size)], seeds, X, y, **options)[0]


def train_configs(
    configs: Sequence[tuple[int, int]],
    seeds: Sequence[int],
    X: Any,
    y: Any,
    *,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    epochs: int = 500,
    history_every: int = 0,
    X_test: Any = None,
    y_test: Any = None,
    device: Any = "cpu",
    dtype: Any = "float32",
    on_record: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    engine: str = "auto",
    threads: int | None = None,
) -> list[MultiSeedResult]:
    """Train ``Detector1d(F, k)`` for each (F, k) in ``configs`` from every seed, one result each.

    X is (N, 1, W) or (N, W); y is (N, 1) or (N,) in {0, 1}: numpy arrays or torch tensors. ``history_every``
    = n > 0 records the training loss at epoch 1, every n-th epoch and the last epoch, and calls
    ``on_record(epoch, loss, accuracy)`` there with every model's training loss and accuracy
    so far (models in the order of ``configs``, seeds within; an exception it raises stops
    the training, e.g. Optuna's pruning). ``dtype`` (numpy's or torch's name) float64 is for checks: it tells
    float32 rounding apart from a real difference. ``engine``: ``sgd_epochs``' (auto: compiled on the CPU).
    ``threads``: the compiled engine's (None: torch's thread count).

    Configurations with the same kernel size share one computation. On the compiled engine a
    seed's result is that of training it alone, bit for bit; on the torch engine it agrees up
    to float rounding (how a reduction is vectorised depends on the batch width), so callers
    there that must reproduce each other exactly should batch the same way
    (``outcomes.seed_table`` is that one way). Accuracies on (X_test, y_test) come from the compiled forward.
    """
    seeds = tuple(int(s) for s in seeds)
    configs = [(int(f), int(k)) for f, k in configs]
    _check(configs, seeds, epochs, X_test is None, y_test is None)
    engine = _engine(engine, device)
    results: dict[tuple[int, int], MultiSeedResult] = {}
    for k in sorted({k for _, k in configs}):
        filters = list(dict.fromkeys(f for f, kk in configs if kk == k))
        out = _train_kernel(filters, k, seeds, X, y, lr=lr, momentum=momentum, weight_decay=weight_decay,
                            epochs=epochs, history_every=history_every, X_test=X_test, y_test=y_test,
                            device=device, dtype=_numpy_dtype(dtype or "float32"), on_record=on_record,
                            engine=engine, threads=threads)
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


def _numpy_dtype(dtype: Any) -> np.dtype:
    """numpy's dtype of a numpy or torch dtype (torch.float64 -> float64)."""
    return np.dtype(str(dtype).removeprefix("torch.") if hasattr(dtype, "is_floating_point") else dtype)


def engine_of(device: Any) -> str:
    """What ``auto`` runs on ``device`` (a name or a torch.device): the compiled loop on the CPU, torch's ops
    elsewhere."""
    return "fused" if str(device).split(":")[0] == "cpu" else "torch"


def _engine(engine: str, device: Any) -> str:
    """``engine`` checked (a ConfigError names the choices), ``auto`` resolved for ``device``."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    return engine_of(device) if engine == "auto" else engine


def _threads(threads: int | None) -> int:
    """The compiled engine's threads: ``threads``, else torch's count (which the callers without it set)."""
    if threads is not None:
        return threads
    import torch

    return torch.get_num_threads()


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
    there; on torch's thread count), ``torch`` the tensor ops of ``kernel.py`` (any device; what ``auto`` picks
    elsewhere). Both follow one seed as ``pipeline train --seed s`` does, within float rounding.
    """
    import torch

    if _engine(engine, units.device) == "fused":
        from pipeline.capacity import fused

        if units.device.type != "cpu":
            raise ConfigError(f"the fused engine trains on the CPU; the weights are on {units.device}")

        def seen(epoch: int, *arrays: np.ndarray) -> None:
            on_epoch(epoch, *(torch.from_numpy(a) for a in arrays))

        out = fused.sgd_epochs(units.numpy(), const.numpy(), index, batch, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, epochs=epochs, threads=_threads(None),
                               bufs=[b.numpy() for b in bufs] if bufs else None,
                               on_epoch=seen if on_epoch is not None else None, look_at=look_at)
        return [torch.from_numpy(b) for b in out]
    from pipeline.capacity.kernel import sgd_epochs as torch_epochs

    return torch_epochs(units, const, index, batch, lr=lr, momentum=momentum, weight_decay=weight_decay,
                        epochs=epochs, bufs=bufs, on_epoch=on_epoch, look_at=look_at)


def _epochs(units: np.ndarray, const: np.ndarray, index: WindowIndex, batch: Batch, *, engine: str, device: Any,
            threads: int | None, on_epoch: Callable, **sgd: Any) -> None:
    """``sgd_epochs`` on numpy arrays (in place), ``on_epoch(epoch, logits)`` with numpy logits: the compiled
    engine directly (no torch loaded where ``threads`` is given), the torch engine on ``device`` and back."""
    if engine == "fused":
        from pipeline.capacity import fused

        fused.sgd_epochs(units, const, index, batch, threads=_threads(threads), on_epoch=on_epoch, **sgd)
        return
    import torch

    tu, tc = torch.from_numpy(units).to(device), torch.from_numpy(const).to(device)
    sgd_epochs(tu, tc, index.to(device, tu.dtype), batch.to(device), engine="torch",
               on_epoch=lambda epoch, logits, *_: on_epoch(epoch, host(logits)), **sgd)
    units[...], const[...] = host(tu), host(tc)


def _train_kernel(filters: list[int], k: int, seeds: tuple[int, ...], X, y, *, lr, momentum, weight_decay,
                  epochs, history_every, X_test, y_test, device, dtype, on_record, engine,
                  threads) -> list[MultiSeedResult]:
    """One computation for all filter counts in ``filters`` with kernel size ``k`` (numpy arrays throughout)."""
    from pipeline.capacity import fused

    index = WindowIndex.cached(X, y, k)
    S = len(seeds)
    units, const, batch = stack_arrays(filters, k, seeds, dtype)
    record = _history_epochs(epochs, history_every)
    history = np.empty((len(record), batch.models), dtype) if record else None
    last: dict[str, np.ndarray] = {}

    def on_epoch(epoch: int, logits: np.ndarray, *_: Any) -> None:
        if history is not None and epoch in record:
            history[record.index(epoch)] = fused.mean_bce(logits, index)
            if on_record is not None:
                on_record(epoch, history[record.index(epoch)], accuracy(logits, index))
        if epoch == epochs:
            last.update(loss=fused.mean_bce(logits, index), accuracy=accuracy(logits, index))

    _epochs(units, const, index, batch, engine=engine, device=device, threads=threads, on_epoch=on_epoch,
            lr=lr, momentum=momentum, weight_decay=weight_decay, epochs=epochs, look_at={*record, epochs})
    test_acc = None
    if X_test is not None:
        test_index = WindowIndex.cached(X_test, y_test, k)
        test_acc = accuracy(fused.logits(units, const, test_index, batch), test_index)
    out, start = [], 0
    for i, f in enumerate(filters):
        u = units[:, start : start + S * f].reshape(k + 2, S, f)
        start += S * f
        rows = slice(i * S, (i + 1) * S)
        out.append(MultiSeedResult(
            filters=f,
            kernel_size=k,
            seeds=seeds,
            final_loss=last["loss"][rows].copy(),
            train_accuracy=last["accuracy"][rows].copy(),
            test_accuracy=None if test_acc is None else test_acc[rows].copy(),
            history=None if history is None else history[:, rows].T.copy(),
            history_epochs=np.asarray(record) if record else None,
            conv_weight=np.ascontiguousarray(u[:k].transpose(1, 2, 0)[:, :, None, :]),
            conv_bias=np.ascontiguousarray(u[k]),
            linear_weight=np.ascontiguousarray(u[k + 1][:, None, :]),
            linear_bias=const[rows, None].copy(),
        ))
    return out


def _history_epochs(epochs: int, every: int) -> list[int]:
    """Epoch 1, every ``every``-th epoch and the last one (as the lab prints them)."""
    if every <= 0:
        return []
    return sorted({1, epochs, *range(every, epochs + 1, every)})
