"""What a trained ConvNet learned: activation maximisation, saliency, edge-detector scores.

Pure functions of a model and tensors (no MLflow here); ``pipeline inspect`` and
``evaluate`` log their results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.registry import first_conv

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
SOBEL_Y = SOBEL_X.T.copy()


# --------------------------------------------------------------------------- activation maximisation
@dataclass(frozen=True)
class Maximised:
    inputs: torch.Tensor  # (T, *input_shape): one optimised input per target
    start: np.ndarray  # (T,) target activation at the noise start
    final: np.ndarray  # (T,) target activation after the ascent


def first_layer_target(model: nn.Module, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Activation of first-layer filter ``index`` at the centre of its feature map, per input.

    One unit (a fixed position) is the classic target: its optimal input is the filter's
    preferred pattern, placed in that unit's receptive field.
    """
    conv = first_conv(model)

    def target(x: torch.Tensor) -> torch.Tensor:
        fmap = conv(x)[:, index]  # (N, W) or (N, H, W)
        centre = tuple(s // 2 for s in fmap.shape[1:])
        return fmap[(slice(None), *centre)]

    return target


def class_target(model: nn.Module, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The score (logit or log-probability) of output ``index``, per input."""

    def target(x: torch.Tensor) -> torch.Tensor:
        return model(x)[:, index]

    return target


def maximise(
    targets: list[Callable[[torch.Tensor], torch.Tensor]],
    input_shape: tuple[int, ...],
    radius: float,
    steps: int = 200,
    lr: float = 0.1,
    seed: int = 0,
    noise: float = 0.01,
) -> Maximised:
    """Gradient ascent on the input, from small noise, projected onto the L2 ball of ``radius``.

    The norm constraint keeps the answer an image-sized input instead of an unbounded one.
    """
    gen = torch.Generator().manual_seed(seed)
    x0 = noise * torch.randn((len(targets), *input_shape), generator=gen)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    with torch.no_grad():
        start = np.array([float(t(x0[i : i + 1])[0]) for i, t in enumerate(targets)])
    for _ in range(steps):
        opt.zero_grad()
        score = torch.stack([t(x[i : i + 1])[0] for i, t in enumerate(targets)]).sum()
        (-score).backward()
        opt.step()
        with torch.no_grad():  # project each input back onto the ball
            norms = x.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = (radius / norms).clamp(max=1.0)
            x.mul_(scale.view(-1, *([1] * len(input_shape))))
    with torch.no_grad():
        final = np.array([float(t(x[i : i + 1])[0]) for i, t in enumerate(targets)])
    return Maximised(x.detach(), start, final)


# --------------------------------------------------------------------------- saliency
def saliency(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """|d score of the predicted class / d input|, per input (same shape as X)."""
    x = X.clone().requires_grad_(True)
    out = model(x)
    if out.shape[1] == 1:  # binary detector: the logit is the score
        score = out[:, 0]
    else:
        score = out.gather(1, out.argmax(dim=1, keepdim=True))[:, 0]
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad.abs()


# --------------------------------------------------------------------------- edge detectors
def _resize_kernel(k: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (larger) or bilinearly resize (smaller) a square kernel to size x size."""
    if k.shape[0] == size:
        return k
    t = torch.from_numpy(np.ascontiguousarray(k, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=True)[0, 0].numpy()


def sobel_bank(size: int) -> dict[str, np.ndarray]:
    """Sobel x and y at ``size`` x ``size``, with their negatives and 45-degree rotations."""
    diag = np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], dtype=np.float32)
    base = {"sobel_x": SOBEL_X, "sobel_y": SOBEL_Y, "sobel_diag": diag, "sobel_antidiag": np.fliplr(diag).copy()}
    bank: dict[str, np.ndarray] = {}
    for name, k in base.items():
        k = k if size == 3 else _resize_kernel(k, size)
        bank[name] = k
        bank[f"-{name}"] = -k
    return bank


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else 0.0


def sobel_scores(weights: np.ndarray) -> list[dict[str, object]]:
    """Per first-layer 2D filter: the best cosine similarity to a Sobel kernel, and which one.

    A filter of size k is compared with the Sobel bank at k x k (3x3 resized up), and, for
    k > 3, its 3x3 centre crop with the 3x3 bank; the best of those counts. Channels are
    summed first (a colour edge detector responds to luminance edges).
    """
    w = np.asarray(weights, dtype=np.float32).sum(axis=1)  # (F, kh, kw)
    rows = []
    for i, k in enumerate(w):
        candidates = [(k, sobel_bank(k.shape[0]))]
        if k.shape[0] > 3:
            c = (k.shape[0] - 3) // 2
            candidates.append((k[c : c + 3, c : c + 3], sobel_bank(3)))
        best, best_name = -1.0, ""
        for kernel, bank in candidates:
            for name, ref in bank.items():
                s = cosine(kernel, ref)
                if s > best:
                    best, best_name = s, name
        rows.append({"filter": i, "best_similarity": best, "best_match": best_name})
    return rows


# --------------------------------------------------------------------------- 1D detector
@torch.no_grad()
def detector_activations(model: nn.Module, X: torch.Tensor, index: int) -> np.ndarray:
    """ReLU(conv) of filter ``index`` along each input: (N, W)."""
    return torch.relu(first_conv(model)(X))[:, index].numpy()


def detector_filter(model: nn.Module) -> tuple[int, np.ndarray]:
    """The filter that acts as the 0,+1,0 detector: the one with the largest positive linear weight."""
    lin = model.linear.weight.detach().cpu().numpy().ravel()
    idx = int(np.argmax(lin))
    return idx, model.conv.weight.detach().cpu().numpy()[idx, 0]


# --------------------------------------------------------------------------- reference convolution
def conv2d_direct(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, padding: int = 0,
                  stride: int = 1) -> np.ndarray:
    """Cross-correlation by loops, as the labs write it: x (N, C, H, W), w (F, C, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, f, ho, wo), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv2d_input_grad_direct(grad_out: np.ndarray, w: np.ndarray, input_hw: tuple[int, int],
                             padding: int = 0) -> np.ndarray:
    """d loss / d input of a stride-1 cross-correlation, by scattering each output's gradient."""
    n, f, ho, wo = grad_out.shape
    _, c, kh, kw = w.shape
    h, wd = input_hw
    gx = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            gx[:, :, i : i + kh, j : j + kw] += np.tensordot(grad_out[:, :, i, j], w, axes=([1], [0]))
    return gx[:, :, padding : padding + h, padding : padding + wd]

