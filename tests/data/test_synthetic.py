"""The synthetic data set reproduces the lab's generator bit for bit, and its enumeration is the generator's
distribution."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.synthetic import enumerate_synthetic, make_synthetic


def lab_generator(n=75, width=20, seed=0):
    """The lab's code, verbatim (global numpy state)."""
    np.random.seed(seed)
    X = np.zeros((n, 1, width), dtype=np.float32)
    y = np.zeros((n, 1), dtype=np.float32)
    for i in range(n):
        size = np.random.randint(1, 3)
        start = np.random.randint(0, width - size)
        value = np.random.choice([-1.0, -0.5, 0.5, 1.0])
        X[i, 0, start : start + size] = value
        y[i] = 1 if size == 1 and value == 1 else 0
    return X, y


def test_seed0_matches_the_documented_facts():
    X, y = make_synthetic(75, 20, 0)
    assert X.shape == (75, 1, 20) and y.shape == (75, 1)
    assert X.dtype == torch.float32 and y.dtype == torch.float32
    assert torch.nonzero(y[:, 0]).ravel().tolist() == [1, 9, 11, 12, 20, 29, 52, 53, 55, 56, 66]
    assert float(X.sum()) == 7.5


def test_matches_the_lab_code_for_other_sizes_and_seeds():
    for n, width, seed in [(75, 20, 0), (40, 12, 3), (200, 30, 17)]:
        X, y = make_synthetic(n, width, seed)
        Xl, yl = lab_generator(n, width, seed)
        assert np.array_equal(X.numpy(), Xl) and np.array_equal(y.numpy(), yl)


def test_does_not_touch_global_numpy_state():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    make_synthetic(10, 20, 0)
    assert np.random.rand() == expected


def test_held_out_seeds_give_other_data():
    X0, _ = make_synthetic(75, 20, 0)
    X1, _ = make_synthetic(75, 20, 1)
    assert not torch.equal(X0, X1)


# --------------------------------------------------------------------------- the whole distribution
def hand_enumeration_width_4():
    """Width 4, written out: a single bump at 0..2 (p = 1/2 · 1/3 · 1/4 = 1/24 each), a double at 0..1
    (p = 1/2 · 1/2 · 1/4 = 1/16 each), each with the four values; the label is 1 only for a single +1."""
    values = [-1.0, -0.5, 0.5, 1.0]
    seqs = {}
    for v in values:
        seqs[(v, 0, 0, 0)] = (1 / 24, float(v == 1.0))
        seqs[(0, v, 0, 0)] = (1 / 24, float(v == 1.0))
        seqs[(0, 0, v, 0)] = (1 / 24, float(v == 1.0))
        seqs[(v, v, 0, 0)] = (1 / 16, 0.0)
        seqs[(0, v, v, 0)] = (1 / 16, 0.0)
    return seqs


def as_dict(dist):
    return {tuple(float(t) for t in x[0]): (float(p), float(y[0])) for x, y, p in zip(dist.X, dist.y, dist.p)}


def test_the_enumeration_at_width_4_is_the_hand_written_one():
    dist = enumerate_synthetic(4)
    got = as_dict(dist)
    assert len(dist.X) == len(got) == 20 == 4 * 3 + 4 * 2  # distinct
    expected = hand_enumeration_width_4()
    assert got.keys() == expected.keys()
    for seq, (p, label) in expected.items():
        assert got[seq][0] == pytest.approx(p) and got[seq][1] == label, seq


@pytest.mark.parametrize("width", [3, 4, 5, 20, 31])
def test_the_probabilities_sum_to_one_and_the_count_is_4_w_minus_1_plus_4_w_minus_2(width):
    dist = enumerate_synthetic(width)
    assert len(dist.X) == 4 * (width - 1) + 4 * (width - 2)
    assert float(dist.p.sum()) == pytest.approx(1.0, abs=1e-12)
    assert dist.X.shape == (len(dist.X), 1, width) and dist.y.shape == (len(dist.X), 1)
    assert len({tuple(x[0].tolist()) for x in dist.X}) == len(dist.X)


def test_the_generator_draws_each_sequence_as_often_as_its_probability():
    """40,000 rows of make_synthetic at width 5: each sequence's share within 4.5 standard errors of p."""
    n = 40_000
    X, y = make_synthetic(n, 5, 7)
    dist = enumerate_synthetic(5)
    m = dist.matches(X)
    assert m.sum(1).eq(1).all()  # every row is exactly one enumerated sequence
    share = m.double().mean(0)
    se = (dist.p * (1 - dist.p) / n).sqrt()
    assert ((share - dist.p).abs() < 4.5 * se).all()
    assert torch.equal(y[:, 0], dist.y[m.float().argmax(1), 0])  # and carries its label


def test_seen_repeats_and_the_exact_and_unseen_accuracies_by_hand():
    dist = enumerate_synthetic(4)
    rows = [(1.0, 0, 0, 0), (1.0, 0, 0, 0), (0, -0.5, -0.5, 0)]  # one single (1/24) twice, one double (1/16)
    X = torch.tensor(rows, dtype=torch.float32).unsqueeze(1)
    seen = dist.seen(X)
    assert int(seen.sum()) == 2
    test = torch.tensor([(1.0, 0, 0, 0), (0, 0, 0.5, 0), (0, -0.5, -0.5, 0)], dtype=torch.float32).unsqueeze(1)
    assert dist.repeats(test, seen) == 2
    keys = [tuple(float(t) for t in x[0]) for x in dist.X]
    wrong = {(0, 0, 0.5, 0), (0.5, 0.5, 0, 0), (1.0, 0, 0, 0)}  # 1/24 + 1/16 + 1/24 (the last one seen)
    correct = torch.tensor([k not in wrong for k in keys])
    exact, unseen = dist.accuracies(correct, seen)
    assert float(exact) == pytest.approx(1 - (1 / 24 + 1 / 16 + 1 / 24))
    unseen_mass = 1 - 1 / 24 - 1 / 16
    assert float(unseen) == pytest.approx(1 - (1 / 24 + 1 / 16) / unseen_mass)
    both = torch.stack([correct, torch.ones_like(correct)])  # a batch of two models
    exact2, unseen2 = dist.accuracies(both, seen)
    assert exact2.tolist() == pytest.approx([float(exact), 1.0])
    assert unseen2.tolist() == pytest.approx([float(unseen), 1.0])
