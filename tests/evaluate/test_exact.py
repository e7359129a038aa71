"""The 1D detector's exact and unseen accuracy: over every sequence the generator can make, weighted by its
probability, checked against sums written out by hand and against a sequence-by-sequence Python loop."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pipeline.config.stages import EvaluateConfig, TrainConfig
from pipeline.data.synthetic import make_synthetic
from pipeline.evaluate import stage as evaluate
from pipeline.evaluate.exact import exact_scores
from pipeline.train import stage as train


class PeakIsOne(nn.Module):
    """Says 'pattern' iff the sequence's largest value is +1: right everywhere except on a double +1 bump."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.amax(dim=(1, 2)) == 1.0).float().unsqueeze(1) * 2 - 1  # logits ±1


def rows(*seqs) -> torch.Tensor:
    return torch.tensor(seqs, dtype=torch.float32).unsqueeze(1)


def test_a_rule_model_at_width_5_scores_what_the_hand_sums_say():
    # width 5: a double bump starts at 0..2 (p = 1/2 · 1/3 · 1/4 = 1/24), a single at 0..3 (1/2 · 1/4 · 1/4 = 1/32).
    # PeakIsOne is wrong on the 3 double +1 bumps: exact accuracy 1 - 3/24.
    X_train = rows((1, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 1, 0, 0))  # one wrong double, one right single
    X_test = rows((0, 0, 1, 0, 0), (0, -1, 0, 0, 0), (1, 1, 0, 0, 0), (0, 0, 0, 0, 0.5))
    s = exact_scores(PeakIsOne(), 5, X_train, X_test)
    assert s.distinct_sequences == 4 * 4 + 4 * 3 == 28
    assert s.distinct_seen_in_training == 2 and s.test_rows_seen_in_training == 2
    assert s.exact_accuracy == pytest.approx(1 - 3 / 24)
    assert s.unseen_accuracy == pytest.approx(1 - (2 / 24) / (1 - 1 / 24 - 1 / 32))


def test_without_training_data_there_is_no_unseen_accuracy():
    s = exact_scores(PeakIsOne(), 5)
    assert s.exact_accuracy == pytest.approx(1 - 3 / 24)
    assert math.isnan(s.unseen_accuracy) and s.distinct_seen_in_training is None
    assert set(s.metrics()) == {"exact_accuracy", "distinct_sequences"}


def every_sequence(width: int):
    """(sequence, probability) of the generator at ``width``, by a loop over what the lab's code can draw."""
    for size in (1, 2):
        for start in range(width - size):
            for value in (-1.0, -0.5, 0.5, 1.0):
                x = [0.0] * width
                x[start:start + size] = [value] * size
                yield tuple(x), 0.5 / (width - size) / 4


def test_evaluate_logs_the_exact_and_unseen_accuracy_of_the_run_it_evaluates(client):
    result = train.run(TrainConfig(filters=(3,), seed=0, epochs=40, print_every=0, image_every=0), echo=lambda s: None)
    lines: list[str] = []
    ev = evaluate.run(EvaluateConfig(model_uri=result.model_uri), echo=lines.append)
    m = client.get_run(ev.run_id).data.metrics

    X, _ = make_synthetic(75, 20, 0)  # the train run's data: the synthetic recipe's n, width, data seed
    seen = {tuple(r[0].tolist()) for r in X}
    test = [tuple(r[0].tolist()) for r in make_synthetic(1000, 20, 2)[0]]  # evaluate's default fresh set
    exact = unseen = unseen_mass = 0.0
    with torch.no_grad():
        for seq, p in every_sequence(20):
            label = float(seq.count(1.0) == 1 and sum(v != 0 for v in seq) == 1)
            right = float(float(result.model(torch.tensor([[seq]])).item() > 0) == label)
            exact += p * right
            if seq not in seen:
                unseen, unseen_mass = unseen + p * right, unseen_mass + p
    assert m["exact_accuracy"] == pytest.approx(exact) == pytest.approx(ev.exact_accuracy)
    assert m["unseen_accuracy"] == pytest.approx(unseen / unseen_mass) == pytest.approx(ev.unseen_accuracy)
    assert m["distinct_sequences"] == 148 and m["distinct_seen_in_training"] == len(seen) == 58
    assert m["test_rows_seen_in_training"] == sum(t in seen for t in test) == 383
    assert any(line.startswith("exact_accuracy ") and "unseen_accuracy" in line for line in lines)


def test_the_training_inputs_of_a_run_made_by_mlflow_run():
    """`mlflow run` logs an empty -P value as the param ``''``: no prepared data, the synthetic set of n, width, seed."""
    import numpy as np

    from pipeline.evaluate.exact import training_inputs

    params = {"data_uri": "''", "recipe": "''", "n": "75", "width": "20", "data_seed": "0"}
    np.random.seed(0)  # the lab's generator, written out: the first row of seed 0
    size = np.random.randint(1, 3)
    start = np.random.randint(0, 20 - size)
    value = np.random.choice([-1.0, -0.5, 0.5, 1.0])
    X = training_inputs(params)
    assert X.shape == (75, 1, 20) and float(X.sum()) == 7.5  # the lab's set: X sums to 7.5
    assert np.flatnonzero(X[0, 0].numpy()).tolist() == list(range(start, start + size))
    assert set(X[0, 0].numpy()[start:start + size]) == {value}
    assert training_inputs({"data_uri": "''"}) is None  # no width: not known
