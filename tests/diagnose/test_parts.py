"""The pieces of a diagnosis on hand-made inputs: verdict rules, filter classes, tickets, landscape."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.capacity.kernel import WindowIndex
from pipeline.data.synthetic import make_synthetic
from pipeline.diagnose import anatomy, landscape
from pipeline.diagnose.derivatives import DetectorObjective, detector_size, split_detector
from pipeline.diagnose.verdicts import STEPS, Tolerances, classify, sensitivity


# --------------------------------------------------------------------------- verdicts
def test_each_rule_gives_its_verdict():
    T = 500
    table = pd.DataFrame({
        "success":           [True,  False, False, False, False, False, False],
        "escaped":           [False, False, False, False, True,  False, False],
        "hessian_min":       [0.001, 0.001, 0.001, -0.05, 0.001, 0.001, -5.0],
        "last_switch_epoch": [500,   20,    490,   20,    20,    20,    20],
    })
    grad = np.zeros((7, len(STEPS)))
    curv = np.zeros((7, len(STEPS)))
    curv[3, STEPS <= 0.1] = 0.05  # the negative curvature lowers J within r
    grad[5, STEPS == STEPS[STEPS <= 0.1].max()] = 0.05  # the gradient does
    grad[6, STEPS > 0.2] = 1.0  # ... but only beyond r: not a descent that counts
    tol = Tolerances(delta=0.01, radius=0.1, last_epochs=50)
    got = classify(table, grad, curv, tol, T).tolist()
    # row 6: curvature -5 < -2·delta/r² = -2 predicts a drop that does not come: a kink
    assert got == ["solved", "local minimum", "kink", "saddle", "plateau", "plateau", "kink"]
    assert classify(table, grad, curv, Tolerances(0.01, 1.0, 50), T)[6] == "plateau"  # a radius of 1 sees it
    sens = sensitivity(table, grad, curv, tol, T)
    assert sens["tolerance"].tolist() == ["delta", "baseline", "delta", "radius", "radius", "last_epochs",
                                          "last_epochs"]
    assert np.allclose(sens[["solved", "local minimum", "kink", "saddle", "plateau"]].sum(axis=1), 1)
    assert sens.loc[sens["tolerance"] == "baseline", "[minimum]"].item() == pytest.approx(3 / 7)


# --------------------------------------------------------------------------- anatomy
def theta_of(taps, biases, linear, const=0.0):
    taps = torch.tensor(taps, dtype=torch.float64)
    return torch.cat([taps.reshape(-1), torch.tensor(biases + linear + [const], dtype=torch.float64)])[None]


def test_filter_classes_on_hand_made_filters():
    X, _ = make_synthetic(75, 20, 0)
    theta = theta_of([[0, -1, 1, -1, 0], [0, -1, 1, -1, 0.001], [0, 0, -1, 0, 0], [1, 1, 1, 1, 1]],
                     [0.0, 0.0, 0.0, -10.0], [3.0, 1.0, -1.0, 1.0])
    table = anatomy.classify_filters(theta, X, 4, 5)
    assert table["class"].tolist() == ["detector", "redundant", "wrong pattern", "dead"]
    assert table["prefers"].tolist()[0] == "+1" and table["prefers"].tolist()[2].startswith("-1")
    counts = anatomy.class_counts(table, 1)
    assert counts.iloc[0].tolist() == [1, 1, 1, 1]
    assert anatomy.initial_alignment(theta, 4, 5)[0] == pytest.approx(1 / np.sqrt(3))


def test_logistic_fit_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 4000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(0.5 + 3.0 * x)))
    fit = anatomy.logistic_fit(x, y)
    assert fit["slope"] == pytest.approx(3.0, abs=4 * fit["slope_se"]) and fit["p_value"] < 1e-10
    assert 0.75 < fit["auc"] < 0.95
    flat = anatomy.logistic_fit(x, rng.uniform(size=x.size) < 0.5)
    assert flat["p_value"] > 0.001 and abs(flat["auc"] - 0.5) < 0.05


# --------------------------------------------------------------------------- landscape
def test_permuted_filters_are_the_same_network_and_align_back():
    X, y = make_synthetic(75, 20, 0)
    loss = DetectorObjective(WindowIndex.build(X, y, 3).to("cpu", torch.float64), 3, 3, 0.0)
    theta = torch.randn(detector_size(3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    permuted = landscape.permute_filters(theta, [2, 0, 1], 3, 3)
    assert not torch.equal(permuted, theta)
    t, values = landscape.path_losses(loss, theta, landscape.align(theta, permuted, 3, 3))
    assert np.allclose(values, values[0]) and landscape.barrier(t, values) == pytest.approx(0, abs=1e-12)
    t, values = landscape.path_losses(loss, theta, permuted)  # without aligning, the path leaves the network
    assert np.ptp(values) > 0.1


def test_filter_normalised_directions_match_each_filters_norm_and_leave_biases():
    theta = torch.randn(detector_size(4, 5), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = landscape.filter_normalised(theta, 4, 5, torch.Generator().manual_seed(2))
    taps, b, v, c = split_detector(theta, 4, 5)
    d_taps, d_b, d_v, d_c = split_detector(d, 4, 5)
    torch.testing.assert_close(d_taps.norm(dim=1), taps.norm(dim=1))
    torch.testing.assert_close(d_v.norm(), v.norm())
    assert not d_b.any() and d_c == 0


def test_a_ticket_that_cannot_be_fitted_says_why_instead_of_nan():
    from types import SimpleNamespace

    from pipeline.diagnose.summaries import ticket_text

    def row(successes, n):
        fit = anatomy.logistic_fit(np.linspace(0, 1, n), (np.arange(n) < successes).astype(float))
        return SimpleNamespace(**fit)

    assert ticket_text(row(0, 8)) == "not fitted: no seed solved, nothing to predict"
    assert ticket_text(row(8, 8)) == "not fitted: every seed solved, nothing to predict"
    assert ticket_text(row(1, 2)) == "not fitted: fewer than 3 seeds"
    text = ticket_text(row(4, 8))
    assert text.startswith("slope ") and "nan" not in text
