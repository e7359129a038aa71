"""The loss landscape, drawn: straight paths from stuck seeds to solved ones, and 2D slices.

* **Paths.** Filters can be listed in any order without changing the network (filter f is
  its taps, bias and linear weight), so before interpolating, the solved seed's filters are
  permuted to match the failed seed's (Hungarian assignment on the squared distance between
  the filters' parameters). The training loss along theta(t) = (1 - t)·failed + t·solved
  shows a barrier when it rises above the straight line between its two ends.
* **Slices.** Around a point theta, the loss on theta + a·d1 + b·d2 for two random Gaussian
  directions, filter-normalised as in Li et al., "Visualizing the Loss Landscape of Neural
  Nets" (NeurIPS 2018): each filter's taps in d are rescaled to the norm of that filter's
  taps in theta, the linear layer's weight row to the norm of theta's, and the biases are
  not moved (their direction is zero, as in that paper's figures).
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.diagnose.derivatives import detector_size, split_detector, values


def _filter_rows(theta: torch.Tensor, filters: int, k: int) -> torch.Tensor:
    """(F, k + 2): each filter's taps, bias and linear weight."""
    taps, b, v, _ = split_detector(theta, filters, k)
    return torch.cat([taps, b[:, None], v[:, None]], dim=1)


def permute_filters(theta: torch.Tensor, order, filters: int, k: int) -> torch.Tensor:
    """theta (P,) with its filters listed in ``order``: the same network."""
    taps, b, v, c = split_detector(theta, filters, k)
    order = torch.as_tensor(order)
    return torch.cat([taps[order].reshape(-1), b[order], v[order], c.reshape(1)])


def align(reference: torch.Tensor, other: torch.Tensor, filters: int, k: int) -> torch.Tensor:
    """``other`` with its filters permuted to be closest to ``reference``'s (both (P,))."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(_filter_rows(reference, filters, k), _filter_rows(other, filters, k)) ** 2
    _, order = linear_sum_assignment(cost.numpy())
    return permute_filters(other, order, filters, k)


def path_losses(objective, start: torch.Tensor, end: torch.Tensor, points: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """(t, loss at (1 - t)·start + t·end) on ``points`` evenly spaced t in [0, 1]."""
    t = torch.linspace(0, 1, points, dtype=start.dtype)
    thetas = (1 - t)[:, None] * start + t[:, None] * end
    return t.numpy(), values(objective, thetas).numpy()


def barrier(t: np.ndarray, loss: np.ndarray) -> float:
    """The largest rise of the loss above the straight line between the path's two ends."""
    return float(np.max(loss - ((1 - t) * loss[0] + t * loss[-1])))


def filter_normalised(theta: torch.Tensor, filters: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """A random direction (P,) scaled filter by filter to theta (Li et al. 2018); biases stay put."""
    d = torch.randn(detector_size(filters, k), generator=generator, dtype=torch.float64).to(theta.dtype)
    taps, _, v, _ = split_detector(theta, filters, k)
    d_taps, _, d_v, _ = split_detector(d, filters, k)
    d_taps = d_taps * (taps.norm(dim=1, keepdim=True) / d_taps.norm(dim=1, keepdim=True).clamp_min(1e-12))
    d_v = d_v * (v.norm() / d_v.norm().clamp_min(1e-12))
    zeros = torch.zeros(filters, dtype=theta.dtype)
    return torch.cat([d_taps.reshape(-1), zeros, d_v, torch.zeros(1, dtype=theta.dtype)])


def slice_2d(objective, theta: torch.Tensor, filters: int, k: int, points: int = 31, span: float = 1.0,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a, loss (points, points)) on theta + a_i·d1 + a_j·d2, a in [-span, span], rows = d2."""
    g = torch.Generator().manual_seed(seed)
    d1, d2 = filter_normalised(theta, filters, k, g), filter_normalised(theta, filters, k, g)
    a = torch.linspace(-span, span, points, dtype=theta.dtype)
    grid = theta + a[None, :, None] * d1 + a[:, None, None] * d2  # (points, points, P)
    return a.numpy(), values(objective, grid.reshape(-1, theta.shape[0])).reshape(points, points).numpy()
