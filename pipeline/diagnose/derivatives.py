"""Exact derivatives of the training objective at many seeds' weights at once (float64, torch.func).

Each seed's weights are one flat vector theta. For the lab's detector Conv1d(1, F, k) -> ReLU
-> global max -> Linear(F, 1): ``[taps (F·k, filter-major), conv biases (F), linear weights (F),
linear bias]``; for the published task's Conv1d(1, F, 4, no bias) -> max -> Linear(F, 1):
``[taps (F·4), linear weights (F), linear bias]``. The objective is what SGD descends: the
mean BCE-with-logits plus (weight_decay / 2)·|theta|² (torch's ``weight_decay`` adds wd·theta
to every gradient, biases included), so a stationary point of training is one of this J.

Ties. The loss is smooth except where a ReLU sits at 0 or two different windows tie for the
maximum. There the derivatives are one-sided, taken the way torch's own backward takes them:
the ReLU counts as off at 0 (its derivative is 1 only for z > 0), and the maximum belongs to
the first maximal window along the row (``argmax``; torch's max pool routes its gradient the
same way). The gradient and Hessian are thus those of the smooth piece that this rule
selects; ``kink_margins`` says how far each point is from the nearest switch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad, hessian, vmap

from pipeline.capacity.kernel import WindowIndex


# --------------------------------------------------------------------------- parameter layout
def detector_size(filters: int, k: int) -> int:
    return filters * (k + 2) + 1


def detector_theta(units: torch.Tensor, const: torch.Tensor, filters: int, k: int) -> torch.Tensor:
    """Flat parameter vectors (S, P) from the trainer's units (k + 2, S·F) and linear biases (S,)."""
    S = const.shape[0]
    u = units.reshape(k + 2, S, filters)  # (k + 2, S, F)
    return torch.cat([u[:k].permute(1, 2, 0).reshape(S, filters * k), u[k], u[k + 1], const[:, None]], dim=1)


def detector_units(theta: torch.Tensor, filters: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of ``detector_theta``: (units (k + 2, S·F), const (S,))."""
    S = theta.shape[0]
    taps = theta[:, : filters * k].reshape(S, filters, k).permute(2, 0, 1)  # (k, S, F)
    b, v = theta[:, filters * k : filters * (k + 1)], theta[:, filters * (k + 1) : filters * (k + 2)]
    units = torch.cat([taps, b[None], v[None]]).reshape(k + 2, S * filters)
    return units.contiguous(), theta[:, -1].contiguous()


def split_detector(theta: torch.Tensor, filters: int, k: int):
    """(taps (..., F, k), conv biases (..., F), linear weights (..., F), linear bias (...))."""
    fk = filters * k
    return (theta[..., :fk].unflatten(-1, (filters, k)), theta[..., fk : fk + filters],
            theta[..., fk + filters : fk + 2 * filters], theta[..., -1])


# --------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class DetectorObjective:
    """J(theta) = mean BCE of the detector on a data set (through its distinct windows) + wd/2·|theta|²."""

    index: WindowIndex  # float64, as kernel.WindowIndex.build(X, y, k).to("cpu", torch.float64)
    filters: int
    k: int
    weight_decay: float

    def window_z(self, theta: torch.Tensor) -> torch.Tensor:
        """Pre-activations (G, M, F) of every group's distinct windows; fillers at -inf."""
        taps, b, _, _ = split_detector(theta, self.filters, self.k)
        z = self.index.windows[:-1] @ taps.T + b  # (P, F)
        z = torch.cat([z, torch.full_like(z[:1], float("-inf"))])  # (P + 1, F): the filler is never the max
        return z[self.index.ids].unflatten(0, (self.index.groups, -1))  # (G, M, F)

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        zg = self.window_z(theta)
        first = zg.argmax(dim=1, keepdim=True)  # the first maximal window: torch's max-pool routing
        h = torch.relu(zg.gather(1, first).squeeze(1))  # (G, F); relu'(0) = 0, as torch
        _, _, v, c = split_detector(theta, self.filters, self.k)
        return h @ v + c  # (G,)

    def bce(self, theta: torch.Tensor) -> torch.Tensor:
        logits = self.logits(theta)
        count, pos = self.index.count[:, 0], self.index.positives[:, 0]
        return (torch.nn.functional.softplus(logits) * count - logits * pos).sum() / self.index.n

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.bce(theta) + 0.5 * self.weight_decay * theta.dot(theta)


@dataclass(frozen=True)
class PatternObjective:
    """The published task's J: mean BCE of Conv1d(1, F, 4, no bias) -> max -> Linear on (X, y) + wd/2·|theta|²."""

    windows: torch.Tensor  # (N, W - 3, 4) float64: every 4-wide window of every sequence
    y: torch.Tensor  # (N,) float64 in {0, 1}
    filters: int
    weight_decay: float = 0.0

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        F = self.filters
        z = self.windows @ theta[: 4 * F].reshape(F, 4).T  # (N, W - 3, F)
        first = z.argmax(dim=1, keepdim=True)
        return z.gather(1, first).squeeze(1) @ theta[4 * F : 5 * F] + theta[-1]  # (N,)

    def bce(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(self.logits(theta), self.y)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.bce(theta) + 0.5 * self.weight_decay * theta.dot(theta)


# --------------------------------------------------------------------------- batched derivatives
def batched(fn: Callable, chunk: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` of one theta, applied to (S, P) thetas with vmap in chunks (memory stays small)."""
    mapped = vmap(fn)

    def run(thetas: torch.Tensor) -> torch.Tensor:
        return torch.cat([mapped(part) for part in thetas.split(chunk)])

    return run


def gradients(objective: Callable, thetas: torch.Tensor) -> torch.Tensor:
    """dJ/dtheta, (S, P)."""
    return batched(grad(objective))(thetas)


def hessians(objective: Callable, thetas: torch.Tensor) -> torch.Tensor:
    """d²J/dtheta², (S, P, P), exact (forward over reverse mode) on the selected smooth piece."""
    with warnings.catch_warnings():  # forward mode's first use: torch scripts its own decompositions, and warns
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        return batched(hessian(objective), chunk=32)(thetas)


def values(objective: Callable, thetas: torch.Tensor) -> torch.Tensor:
    """J at many points, (S,)."""
    return batched(objective, chunk=1024)(thetas)


def kink_margins(objective: DetectorObjective, thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each point is from a switch of the piecewise-smooth loss, per seed (S,):

    * relu: the smallest |max pre-activation| over (row group, filter), the distance of a
      ReLU from turning on or off;
    * argmax: the smallest gap between the maximal window and the best different window,
      over (row group, filter) whose ReLU is on (a smaller gap: the max can change hands).
    """
    zg = batched(objective.window_z, chunk=256)(thetas)  # (S, G, M, F)
    top = zg.topk(2, dim=2).values if zg.shape[2] > 1 else torch.cat([zg, torch.full_like(zg, -torch.inf)], 2)
    zmax, second = top[:, :, 0], top[:, :, 1]  # (S, G, F)
    relu = zmax.abs().flatten(1).amin(dim=1)
    gap = torch.where(zmax > 0, zmax - second, torch.inf).flatten(1).amin(dim=1)
    return relu, gap
