"""The capacity study's outcomes: one configuration (F, k) trained from many seeds at once.

``seed_table`` is the one way to turn (F, k, seeds, settings) into per-seed outcomes: the
capacity stage and the sweep's success objective both call it, so both report the same
P(success) for the same seeds. Besides the sampled ``test_accuracy`` each seed gets
``exact_accuracy`` (over every sequence the generator can make, weighted by its probability)
and ``unseen_accuracy`` (over the sequences absent from the training set), all seeds scored at
once (``exact_columns``).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from pipeline.capacity.multiseed import MultiSeedResult, train_seeds
from pipeline.capacity.stats import is_success
from pipeline.capacity.windows import padded_windows
from pipeline.config.checks import fits_in_memory
from pipeline.config.studies import CapacityConfig
from pipeline.data.synthetic import distribution, synthetic_arrays

COLUMNS = ["filters", "kernel_size", "seed", "final_loss", "train_accuracy", "test_accuracy", "exact_accuracy",
           "unseen_accuracy", "success"]


@dataclass(frozen=True)
class Settings:
    """Everything besides (F, k, seed) that a seed's outcome depends on."""

    lr: float
    momentum: float
    weight_decay: float
    epochs: int
    n: int  # training sequences
    width: int  # sequence length W
    data_seed: int  # numpy seed of the training set
    test_seed: int  # numpy seed of the fresh test set
    test_n: int  # test sequences
    tau: float  # success threshold on the final training loss
    device: str  # cpu | cuda (auto is resolved here)

    @classmethod
    def from_config(cls, cfg=None) -> "Settings":
        """The same-named fields of ``cfg`` (CapacityConfig, the sweep's config); CapacityConfig's defaults
        for the rest, so that the defaults live in one place."""
        base = CapacityConfig()
        values = {f.name: getattr(cfg, f.name, getattr(base, f.name)) for f in dataclasses.fields(cls)}
        if values["device"] != "cpu":  # auto -> cpu | cuda; cuda without a GPU: a ConfigError (torch tells)
            from pipeline.train.batching import pick_device

            values["device"] = str(pick_device(values["device"]))
        return cls(**values)


@functools.lru_cache(maxsize=4)
def datasets(n: int, width: int, data_seed: int, test_n: int, test_seed: int):
    """(X, y, X_test, y_test) numpy: the training set and the fresh test set (cached: grids reuse them)."""
    return (*synthetic_arrays(n, width, data_seed), *synthetic_arrays(test_n, width, test_seed))


def check_memory(filters: int, kernel_size: int, seeds: int, settings: Settings) -> None:
    """The largest configuration's S·F units fit in memory (measured: about half a byte per unit,
    row and distinct window of the training and test sets)."""
    rows = settings.n + settings.test_n
    fits_in_memory(0.5 * seeds * filters * rows * min(settings.width, 2 * kernel_size + 1),
                   f"training {seeds} seeds x {filters} filters (kernel {kernel_size}) at once",
                   "use fewer --seeds or fewer --filters")


def seed_table(filters: int, kernel_size: int, seeds: Sequence[int], settings: Settings,
               on_progress: Callable[[int, float], None] | None = None, every: int = 0,
               threads: int | None = None) -> pd.DataFrame:
    """One configuration trained from every seed at once: the tidy table, one row per seed.

    ``on_progress(epoch, p)`` hears the share of seeds that would succeed if training stopped
    there, at epoch 1, every ``every`` epochs and the last (the same training either way). ``threads``:
    the compiled trainer's (None: torch's count; given, on the CPU, no torch is loaded).
    """
    X, y, Xt, yt = datasets(settings.n, settings.width, settings.data_seed, settings.test_n, settings.test_seed)

    def on_record(epoch: int, loss: np.ndarray, accuracy: np.ndarray) -> None:
        on_progress(epoch, float(is_success(loss, accuracy, settings.tau).mean()))

    r = train_seeds(filters, kernel_size, seeds, X, y, lr=settings.lr, momentum=settings.momentum,
                    weight_decay=settings.weight_decay, epochs=settings.epochs, X_test=Xt, y_test=yt,
                    device=settings.device, history_every=every if on_progress else 0,
                    on_record=on_record if on_progress else None, threads=threads)
    exact, unseen = exact_columns(r, X)
    return pd.DataFrame({
        "filters": filters,
        "kernel_size": kernel_size,
        "seed": np.asarray(r.seeds, dtype=np.int64),
        "final_loss": r.final_loss.astype(np.float64),
        "train_accuracy": r.train_accuracy,
        "test_accuracy": r.test_accuracy,
        "exact_accuracy": exact,
        "unseen_accuracy": unseen,
        "success": is_success(r.final_loss, r.train_accuracy, settings.tau),
    }, columns=COLUMNS)


def exact_columns(result: MultiSeedResult, X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact, unseen) accuracy (S,) of every seed's final detector, over the generator's distribution at the
    training width (``Distribution.accuracies``), the unseen one over the sequences absent from ``X_train``.

    One computation for all seeds, in numpy: the S·F filters over the k-wide windows of the M distinct
    sequences (``Detector1d``'s zero-padded convolution), then its ReLU, global max and linear layer per seed.
    """
    dist = distribution(X_train.shape[-1])
    S, F, _, k = result.conv_weight.shape
    taps, bias = result.conv_weight.reshape(S * F, k).T, result.conv_bias.reshape(S * F)
    maps = padded_windows(dist.X[:, 0], k) @ taps + bias  # (M, W, S·F)
    peaks = maps.max(axis=1).clip(min=0).reshape(-1, S, F)  # (M, S, F): max of ReLU = ReLU of max
    logits = np.einsum("msf,sf->sm", peaks, result.linear_weight[:, 0]) + result.linear_bias  # (S, M)
    correct = (logits > 0) == (dist.y[:, 0] > 0.5)  # (S, M)
    return dist.accuracies(correct, dist.seen(X_train))
