"""The 1D detector scored exactly: over every sequence the generator can make, weighted by its probability.

A sampled test set of the synthetic task repeats the training inputs (148 distinct sequences at
width 20; 38% of the 1000 rows of data seed 2 are copies of the 75 training rows of data seed 0),
so its accuracy mixes memory with generalisation. ``exact_scores`` gives the accuracy over the
generator's whole distribution (``exact_accuracy``) and over the sequences the run never trained
on (``unseen_accuracy``), with the counts behind them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from pipeline.data.synthetic import enumerate_synthetic, make_synthetic


@dataclass(frozen=True)
class ExactScores:
    exact_accuracy: float  # over every distinct sequence, weighted by its probability
    unseen_accuracy: float  # the same over the sequences absent from the training data (nan: none, or unknown)
    distinct_sequences: int  # how many the generator can make at the training width
    distinct_seen_in_training: int | None  # how many of them the training data holds (None: unknown)
    test_rows_seen_in_training: int | None  # rows of the sampled test set that repeat a training sequence

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None and v == v}  # nan: not logged


@torch.no_grad()
def exact_scores(model: torch.nn.Module, width: int, X_train: torch.Tensor | None = None,
                 X_test: torch.Tensor | None = None) -> ExactScores:
    """Score ``model`` (logits (N, 1) of (N, 1, W) sequences) over the distribution at ``width``, the
    training width; ``X_train`` (unknown: None) tells which sequences were seen, ``X_test`` how many of
    its rows repeat one."""
    dist = enumerate_synthetic(width)
    known = X_train is not None and X_train.shape[-1] == width
    seen = dist.seen(X_train) if known else torch.zeros(len(dist.X), dtype=torch.bool)  # (M,)
    correct = (model(dist.X)[:, 0] > 0).float() == dist.y[:, 0]  # (M,)
    exact, unseen = dist.accuracies(correct, seen)
    repeats = None
    if known and X_test is not None and X_test.shape[-1] == width:
        repeats = dist.repeats(X_test, seen)
    return ExactScores(float(exact), float(unseen) if known else float("nan"), len(dist.X),
                       int(seen.sum()) if known else None, repeats)


def training_inputs(params: dict[str, Any]) -> torch.Tensor | None:
    """The training sequences (N, 1, W) of the train run with these params: its prepared data (``data_uri``),
    else the synthetic set of its ``n``, ``width``, ``data_seed``; None when they are not known. Params are read
    as evaluate inherits them (``resolved.<name>`` first; ``''``, as `mlflow run` logs an empty value, is none)."""
    import dataclasses

    from pipeline.config.parsing import parse_value
    from pipeline.config.stages import TrainConfig
    from pipeline.data.io import bundle_from_uri

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}

    def value(name: str) -> Any:
        return parse_value(fields[name], params.get(f"resolved.{name}", params.get(name)))

    if value("data_uri"):
        return bundle_from_uri(str(value("data_uri"))).train.X
    if value("width") is None:
        return None
    return make_synthetic(value("n") or 75, value("width"), value("data_seed") or 0)[0]
