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


def _hand_saliency(model: Detector1d, x: np.ndarray) -> np.ndarray:
    """d logit / d x of the detector for one sequence x (W,), by the chain rule written out: the logit is
    sum_f v_f * max_t relu(b_f + sum_j w_fj x[t - pad + j]), so each filter whose max is positive sends
    v_f * w_f back onto the window at its argmax."""
    w = model.conv.weight.detach().double().numpy()[:, 0]  # (F, k)
    b = model.conv.bias.detach().double().numpy()
    v = model.linear.weight.detach().double().numpy()[0]
    k, width = w.shape[1], len(x)
    xp = np.pad(x, k // 2)
    grad = np.zeros(width + 2 * (k // 2))
    for f in range(len(w)):
        pre = np.array([b[f] + w[f] @ xp[t : t + k] for t in range(width)])
        t = int(np.argmax(pre))
        if pre[t] > 0:
            grad[t : t + k] += v[f] * w[f]
    return np.abs(grad[k // 2 : k // 2 + width])


def test_saliency_is_the_gradient_of_the_detector_logit():
    torch.manual_seed(0)
    model = Detector1d(3, 5).double()
    X = torch.randn(4, 1, 20, dtype=torch.float64)
    s = probes.saliency(model, X).numpy()
    assert s.shape == X.shape
    for i in range(4):
        np.testing.assert_allclose(s[i, 0], _hand_saliency(model, X[i, 0].numpy()), rtol=1e-12, atol=1e-12)
    eps, x = 1e-6, X[:1].clone()  # and central differences of the logit, at a few positions
    for t in (0, 7, 19):
        xp, xm = x.clone(), x.clone()
        xp[0, 0, t] += eps
        xm[0, 0, t] -= eps
        with torch.no_grad():
            fd = float(model(xp)[0, 0] - model(xm)[0, 0]) / (2 * eps)
        assert abs(fd) == pytest.approx(s[0, 0, t], rel=1e-6, abs=1e-9)


def test_saliency_of_a_classifier_follows_the_predicted_class():
    lin = torch.nn.Linear(6, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2, 0, 0, 0, 0], [0, 0, 3, -4, 0, 0], [0, 0, 0, 0, 5, -6]]))
    X = torch.tensor([[9.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0]])  # predicted classes 0 and 2
    s = probes.saliency(torch.nn.Sequential(torch.nn.Flatten(), lin), X)
    assert torch.equal(s, torch.tensor([[1.0, 2, 0, 0, 0, 0], [0, 0, 0, 0, 5, 6]]))  # |row of the argmax class|


def test_detector_activations_are_relu_of_the_hand_convolution():
    model = Detector1d(2, 3)
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([[[1.0, 1.0, 1.0]], [[-1.0, 2.0, -1.0]]]))  # (F, 1, k)
        model.conv.bias.copy_(torch.tensor([0.0, -0.5]))
    X = torch.tensor([[[0.0, 0, 1, 0, 0, 0]], [[1.0, -1, 0, 2, 0, 3]]])  # (N, 1, W)
    # filter 1 is -x[t-1] + 2 x[t] - x[t+1] - 0.5 with zero padding, then ReLU, worked by hand
    expected = np.array([[0, 0, 1.5, 0, 0, 0], [2.5, 0, 0, 3.5, 0, 5.5]])
    np.testing.assert_array_equal(probes.detector_activations(model, X, 1), expected)
    np.testing.assert_array_equal(probes.detector_activations(model, X, 0), [[0, 1, 1, 1, 0, 0], [0, 0, 1, 2, 5, 3]])


def test_detector_filter_is_the_one_with_the_largest_linear_weight():
    model = Detector1d(3, 5)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.5, -3.0, 2.0]]))
    idx, kernel = probes.detector_filter(model)
    assert idx == 2 and np.array_equal(kernel, model.conv.weight.detach().numpy()[2, 0])
