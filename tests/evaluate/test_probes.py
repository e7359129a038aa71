"""Inspection tools, and the labs' hand-written convolution kept as a reference test."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.evaluate import probes
from pipeline.models.detector import Detector1d


@pytest.mark.parametrize("padding,stride,k", [(0, 1, 3), (1, 1, 3), (2, 1, 5), (0, 2, 3)])
def test_conv2d_matches_the_direct_implementation(padding, stride, k):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 8))
    w = rng.normal(size=(4, 3, k, k))
    b = rng.normal(size=4)
    ref = probes.conv2d_direct(x, w, b, padding=padding, stride=stride)
    got = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=padding, stride=stride)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", [0, 1])
def test_autograd_input_gradient_matches_direct_and_finite_differences(padding):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 6, 5))
    w = rng.normal(size=(3, 2, 3, 3))
    g_out = rng.normal(size=probes.conv2d_direct(x, w, padding=padding).shape)
    xt = torch.from_numpy(x).requires_grad_(True)
    (F.conv2d(xt, torch.from_numpy(w), padding=padding) * torch.from_numpy(g_out)).sum().backward()
    direct = probes.conv2d_input_grad_direct(g_out, w, (6, 5), padding=padding)
    np.testing.assert_allclose(xt.grad.numpy(), direct, rtol=1e-10, atol=1e-10)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 1, 3, 2), (0, 0, 5, 4)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = ((probes.conv2d_direct(xp, w, padding=padding) * g_out).sum()
              - (probes.conv2d_direct(xm, w, padding=padding) * g_out).sum()) / (2 * eps)
        assert fd == pytest.approx(direct[idx], rel=1e-6, abs=1e-8)


def test_sobel_score_recognises_edge_filters():
    sob = np.stack([probes.SOBEL_X, -probes.SOBEL_Y, np.rot90(probes.SOBEL_X).copy()])[:, None]  # (3, 1, 3, 3)
    scores = probes.sobel_scores(sob)
    assert all(s["best_similarity"] == pytest.approx(1.0, abs=1e-6) for s in scores)
    assert scores[1]["best_match"] == "-sobel_y"
    rng = np.random.default_rng(0)
    random = probes.sobel_scores(rng.normal(size=(32, 1, 5, 5)))
    assert np.mean([s["best_similarity"] for s in random]) < 0.8
    five = probes.sobel_scores(np.pad(probes.SOBEL_X, 1)[None, None])  # a 3x3 Sobel inside a 5x5 filter
    assert five[0]["best_similarity"] == pytest.approx(1.0, abs=1e-6)


def test_activation_maximisation_raises_the_target_tenfold():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 12 * 12, 3))
    targets = [probes.first_layer_target(model, i) for i in range(4)] + [probes.class_target(model, c) for c in range(3)]
    result = probes.maximise(targets, (1, 12, 12), radius=10.0, steps=150)
    assert result.inputs.flatten(1).norm(dim=1).max() <= 10.0 + 1e-4
    # the noise start's activation is near zero, so compare the gain with the start's scale
    assert np.all(result.final > 10 * np.maximum(np.abs(result.start), 1e-3)), (result.start, result.final)


def test_saliency_and_detector_activations():
    torch.manual_seed(0)
    model = Detector1d(3, 5)
    X = torch.randn(4, 1, 20)
    s = probes.saliency(model, X)
    assert s.shape == X.shape and float(s.sum()) > 0
    act = probes.detector_activations(model, X, 1)
    assert act.shape == (4, 20) and act.min() >= 0
