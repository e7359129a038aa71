"""The batched derivatives against finite differences (float64), for both tasks, and against the
capacity trainer's hand-written backward."""
from __future__ import annotations

import pytest
import torch

from pipeline.capacity import kernel, pattern
from pipeline.capacity.multiseed import initial_weights
from pipeline.data.synthetic import make_synthetic
from pipeline.diagnose import derivatives as D


def finite_differences(objective, theta: torch.Tensor, h: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of the loss values alone: gradient (P,) and Hessian (P, P)."""
    P = len(theta)
    e = h * torch.eye(P, dtype=theta.dtype)
    f = lambda points: D.values(objective, points)  # noqa: E731
    grad = (f(theta + e) - f(theta - e)) / (2 * h)
    pp, pm = theta + e[:, None] + e[None, :], theta + e[:, None] - e[None, :]  # (P, P, P)
    corners = torch.stack([pp, pm, 2 * theta - pm, 2 * theta - pp]).reshape(-1, P)  # ++, +-, -+, --
    v = f(corners).reshape(4, P, P)
    return grad, (v[0] - v[1] - v[2] + v[3]) / (4 * h * h)


def detector_case(filters=3, k=5, seeds=(0, 1, 2), wd=1e-3):
    X, y = make_synthetic(75, 20, 0)
    index = kernel.WindowIndex.build(X, y, k).to("cpu", torch.float64)
    units, const = map(torch.from_numpy, initial_weights(filters, k, list(seeds)))
    theta = D.detector_theta(units.double(), const.double(), filters, k)
    return D.DetectorObjective(index, filters, k, wd), theta, units.double(), const.double(), index


def pattern_case(filters=3, seeds=(0, 1, 2)):
    X, y = pattern.test_pairs(40, 7)
    windows = X.double().unfold(1, pattern.KERNEL, 1)
    conv, lin, bias, _ = pattern.streams(filters, list(seeds), 1)
    theta = torch.cat([conv.reshape(len(seeds), -1), lin, bias[:, None]], dim=1).double()
    return D.PatternObjective(windows, y.double(), filters, weight_decay=1e-3), theta


@pytest.mark.parametrize("task", ["detector", "pattern"])
def test_batched_gradient_and_hessian_match_finite_differences(task):
    objective, theta = detector_case()[:2] if task == "detector" else pattern_case()
    # move off the initial weights so that the check is not at a special point
    theta = theta + 0.05 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=theta.dtype)
    grads, hessians = D.gradients(objective, theta), D.hessians(objective, theta)
    assert hessians.shape == (theta.shape[0], theta.shape[1], theta.shape[1])
    for i in range(theta.shape[0]):
        fd_grad, fd_hess = finite_differences(objective, theta[i])
        torch.testing.assert_close(grads[i], fd_grad, atol=1e-8, rtol=1e-6)
        torch.testing.assert_close(hessians[i], fd_hess, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(hessians[i], hessians[i].T)
    assert hessians.abs().amax() > 1e-2  # a real check: the curvature is far from zero


def test_gradient_is_the_capacity_kernels_backward_plus_weight_decay():
    objective, theta, units, const, index = detector_case(filters=4, k=3, seeds=(5, 6))
    batch = kernel.Batch(k=3, model_of_unit=torch.arange(2).repeat_interleave(4), models=2)
    fwd = kernel.forward(units, const, index, batch)
    grad_units = torch.empty_like(units)
    grad_const = kernel.backward(units, index, batch, fwd, grad_units)
    expected = D.detector_theta(grad_units, grad_const, 4, 3) + objective.weight_decay * theta
    torch.testing.assert_close(D.gradients(objective, theta), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(D.values(D.DetectorObjective(index, 4, 3, 0.0), theta), kernel.mean_bce(fwd[0], index))


def test_theta_layout_round_trips_and_matches_the_model():
    _, theta, units, const, _ = detector_case(filters=2, k=5, seeds=(0, 9))
    back_units, back_const = D.detector_units(theta, 2, 5)
    assert torch.equal(back_units, units) and torch.equal(back_const, const)
    taps, b, v, c = D.split_detector(theta[1], 2, 5)
    assert torch.equal(taps, units[:5, 2:4].T) and torch.equal(v, units[6, 2:4]) and c == const[1]


def test_kink_margins_see_a_relu_at_zero_and_a_tie():
    X = torch.zeros(2, 1, 8)
    X[0, 0, 2:4] = 0.5  # windows [0, .5, .5] and [.5, .5, 0] tie under the taps [1, 1, 1]
    X[1, 0, 5] = 1.0
    index = kernel.WindowIndex.build(X, torch.tensor([[1.0], [0.0]]), 3).to("cpu", torch.float64)
    objective = D.DetectorObjective(index, 1, 3, 0.0)
    tie = torch.tensor([[1.0, 1.0, 1.0, 0.25, 0.7, 0.1]], dtype=torch.float64)
    relu, gap = D.kink_margins(objective, tie)
    assert gap.item() == 0.0 and relu.item() > 0.2
    at_zero = torch.tensor([[1.0, 1.0, 1.0, -1.0, 0.7, 0.1]], dtype=torch.float64)  # best window: 1 - 1 = 0
    assert D.kink_margins(objective, at_zero)[0].item() == 0.0
