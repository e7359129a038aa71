"""A verdict per seed, by its derivatives and by what actually happens around it.

The objective is what SGD descends, J = mean BCE + (wd/2)·|theta|². Two line searches look
from the final weights for a lower J at step lengths up to r: along -grad J, and along the
eigenvector of the Hessian's smallest eigenvalue, on its side where J does not fall to first
order (so a drop there is curvature's doing). Every seed that did not solve the task is:

* **plateau** (still moving): the long run (``long_factor`` x the epochs at lr / the same
  factor, from the final weights and momentum) solves it, or the gradient line search
  lowers J by more than delta;
* **saddle**: the smallest eigenvalue is negative and the curvature line search lowers J
  by more than delta;
* **kink** (a minimum where the loss is not smooth): neither, but the activation pattern
  (which window holds a max, which ReLU is on) still changed during the last L epochs: the
  iterate hops across a switch, so its own gradient need not vanish (compare ``grad_norm``
  with ``mean_grad_norm``, averaged over those epochs); or the smooth piece's curvature is
  below -2·delta/r², which would lower J by more than delta within r if the piece went on;
* **local minimum**: none of these: one smooth piece, no descent within r, no escape.

Tolerances: delta (how much lower counts), r (how far counts as local), L (how recent a
switch counts). A gradient below delta/r or a negative curvature weaker than 2·delta/r²
cannot lower J by delta within r: the derivative tolerances they imply. ``sensitivity``
redoes every verdict with each tolerance ten times smaller and larger.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from pipeline.diagnose.derivatives import values

VERDICTS = ("solved", "local minimum", "kink", "saddle", "plateau")
GROUPS = {"solved": ("solved",), "minimum": ("local minimum", "kink"), "saddle": ("saddle",),
          "still moving": ("plateau",)}  # the four outcomes a summary reports: a kink is a minimum too
STEPS = np.logspace(-4, 1, 21)  # line-search step lengths, 1e-4 .. 10, four a decade: any radius reads off these


@dataclass(frozen=True)
class Tolerances:
    delta: float  # a line search must lower J by more than this
    radius: float  # ... within this distance
    last_epochs: int  # a switch of the activation pattern in these closing epochs means a kink


def probes(objective, theta: torch.Tensor, direction: torch.Tensor) -> np.ndarray:
    """(S, len(STEPS)): how much J drops from theta at each step length along unit ``direction`` (S, P)."""
    S, P = theta.shape
    steps = torch.as_tensor(STEPS, dtype=theta.dtype)
    points = theta[:, None, :] + steps[None, :, None] * direction[:, None, :]  # (S, A, P)
    return (values(objective, theta)[:, None] - values(objective, points.reshape(-1, P)).reshape(S, -1)).numpy()


def best_drop(drops: np.ndarray, radius: float) -> np.ndarray:
    """The largest drop found at step lengths up to ``radius`` (S,)."""
    within = STEPS <= radius * (1 + 1e-9)
    return drops[:, within].max(axis=1) if within.any() else np.zeros(len(drops))


def classify(table: pd.DataFrame, grad_drops: np.ndarray, curv_drops: np.ndarray, tol: Tolerances,
             epochs: int) -> pd.Series:
    """The verdict of every row of the per-seed table (see the module docstring for the rules)."""
    dg, dc = best_drop(grad_drops, tol.radius), best_drop(curv_drops, tol.radius)
    lam = table["hessian_min"].to_numpy()
    verdict = np.full(len(table), "local minimum", dtype=object)
    kink = (table["last_switch_epoch"].to_numpy() > epochs - tol.last_epochs) | (lam < -2 * tol.delta / tol.radius**2)
    verdict[kink] = "kink"
    verdict[(lam < 0) & (dc > tol.delta)] = "saddle"
    verdict[table["escaped"].to_numpy(bool) | (dg > tol.delta)] = "plateau"
    verdict[table["success"].to_numpy(bool)] = "solved"
    return pd.Series(verdict, index=table.index, name="verdict")


def shares(verdicts: pd.Series, by: pd.DataFrame | None = None) -> pd.DataFrame:
    """Share of each verdict (columns, in VERDICTS order), overall or per group of ``by``'s columns."""
    frame = pd.DataFrame({"verdict": verdicts}) if by is None else by.assign(verdict=verdicts.to_numpy())
    keys = [] if by is None else list(by.columns)
    counts = (frame.groupby(keys + ["verdict"]).size().unstack(fill_value=0) if keys
              else frame["verdict"].value_counts().to_frame().T)
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    return counts.div(counts.sum(axis=1), axis=0)


def sensitivity(table: pd.DataFrame, grad_drops, curv_drops, tol: Tolerances, epochs: int) -> pd.DataFrame:
    """Verdict shares (all seeds) at the chosen tolerances and with each one 10x smaller and larger."""
    rows = []
    for name in ("delta", "radius", "last_epochs"):
        for factor in (0.1, 1.0, 10.0):
            if factor == 1.0 and name != "delta":
                continue  # the baseline once
            value = getattr(tol, name) * factor
            if name == "last_epochs":
                value = max(1, int(round(value)))
            changed = replace(tol, **{name: value})
            share = shares(classify(table, grad_drops, curv_drops, changed, epochs)).iloc[0]
            grouped = {f"[{g}]": float(share[list(members)].sum()) for g, members in GROUPS.items()}
            rows.append({"tolerance": "baseline" if factor == 1.0 else name, "value": value, "factor": factor,
                         **share.to_dict(), **grouped})
    return pd.DataFrame(rows)
