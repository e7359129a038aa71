"""Anatomy of failure: what each filter of a seed does, and whether the seed's luck shows at birth.

Every training row holds one bump: a single value or a 2-wide pulse of -1, -0.5, +0.5 or +1
(the lab's generator); the target is the lone +1 (the window 0, +1, 0). A filter's response
to a row is relu(max over positions of its pre-activation), what the linear layer sees. At
the final weights each filter is:

* **dead**: its ReLU is off on every training row, so it gets no gradient from the loss;
* **redundant**: its taps have cosine similarity > 0.95 with a stronger live filter's
  (strength: |linear weight| x its largest mean response);
* **detector**: its largest mean response, over the bump types, is to the target;
* **wrong pattern**: it prefers another bump (-1, a 2-wide pulse, ...), named in ``prefers``.

The ticket question: a seed's best initial alignment is the largest cosine, over its filters
and over the interior taps j, between a filter's initial taps and the pattern 0, +1, 0 with
its +1 at tap j (= w_j / |w|). ``logistic_fit`` says whether it predicts success.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.diagnose.derivatives import split_detector

CLASSES = ("detector", "wrong pattern", "dead", "redundant")
TARGET = "+1"
REDUNDANT_COSINE = 0.95


def bump_names(X: torch.Tensor) -> list[str]:
    """The bump of every row: '+1', '-0.5', '+1 +1' (a 2-wide pulse), ..., or 'none'."""
    names = []
    for row in X.reshape(X.shape[0], -1).tolist():
        values = [v for v in row if v != 0]
        names.append(" ".join(f"{v:+g}" for v in values) or "none")
    return names


def responses(theta: torch.Tensor, X: torch.Tensor, filters: int, k: int) -> torch.Tensor:
    """(S, N, F) float64: relu(max over positions of each filter's pre-activation) on every row."""
    taps, b, _, _ = split_detector(theta, filters, k)  # (S, F, k), (S, F)
    windows = torch.nn.functional.pad(X.reshape(X.shape[0], -1).double(), (k // 2, k // 2)).unfold(1, k, 1)
    z = torch.einsum("nwk,sfk->snwf", windows, taps) + b[:, None, None, :]  # (S, N, W, F)
    return z.amax(dim=2).clamp_min(0)


def classify_filters(theta: torch.Tensor, X: torch.Tensor, filters: int, k: int) -> pd.DataFrame:
    """One row per (seed index, filter): its class, the bump it prefers, its linear weight."""
    h = responses(theta, X, filters, k)  # (S, N, F)
    names = bump_names(X)
    kinds = sorted(set(names))
    member = torch.tensor([[n == kind for n in names] for kind in kinds], dtype=torch.float64)  # (B, N)
    mean = torch.einsum("snf,bn->sfb", h, member / member.sum(1, keepdim=True))  # (S, F, B)
    preferred = mean.argmax(dim=2)  # (S, F)
    taps, _, v, _ = split_detector(theta, filters, k)
    dead = h.amax(dim=1) <= 0  # (S, F)
    strength = torch.where(dead, -1.0, v.abs() * mean.amax(dim=2))
    unit = taps / taps.norm(dim=2, keepdim=True).clamp_min(1e-12)
    cosine = unit @ unit.transpose(1, 2)  # (S, F, F)
    stronger = strength[:, None, :] > strength[:, :, None]  # [s, i, j]: filter j is stronger than i
    stronger |= (strength[:, None, :] == strength[:, :, None]) & torch.ones(filters, filters).triu(1).T.bool()
    redundant = ((cosine > REDUNDANT_COSINE) & stronger & ~dead[:, None, :]).any(dim=2) & ~dead
    cls = np.where(dead, "dead", np.where(redundant, "redundant",
                                         np.where(np.array(kinds)[preferred.numpy()] == TARGET, "detector",
                                                  "wrong pattern")))
    S = theta.shape[0]
    prefers = np.where(dead, "", np.array(kinds)[preferred.numpy()])  # a dead filter prefers nothing
    return pd.DataFrame({"row": np.repeat(np.arange(S), filters), "filter": np.tile(np.arange(filters), S),
                         "class": cls.reshape(-1), "prefers": prefers.reshape(-1),
                         "linear_weight": v.numpy().reshape(-1)})


def class_counts(filter_table: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """(seeds, 4) counts of each class per seed, columns n_detector, n_wrong_pattern, n_dead, n_redundant."""
    counts = filter_table.groupby(["row", "class"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=range(seeds), columns=list(CLASSES), fill_value=0)
    return counts.rename(columns=lambda c: "n_" + c.replace(" ", "_"))


def initial_alignment(theta_init: torch.Tensor, filters: int, k: int) -> np.ndarray:
    """(S,) the best cosine over filters and interior taps between initial taps and the pattern 0, +1, 0."""
    taps = split_detector(theta_init, filters, k)[0]  # (S, F, k)
    cos = taps / taps.norm(dim=2, keepdim=True).clamp_min(1e-12)
    inner = cos[:, :, 1 : k - 1] if k >= 3 else cos
    return inner.amax(dim=(1, 2)).numpy()


def logistic_fit(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> dict:
    """P(y = 1) = 1 / (1 + exp(-(a + b·x))) by Newton's method: a, b, b's standard error and
    two-sided Wald p-value, and the AUC of x for y (0.5: no information)."""
    from scipy.stats import mannwhitneyu, norm

    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n": len(x), "successes": int(y.sum()), "intercept": np.nan, "slope": np.nan, "slope_se": np.nan,
           "p_value": np.nan, "auc": np.nan}
    if len(x) < 3 or y.min() == y.max():
        return out
    A = np.column_stack([np.ones_like(x), x])
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(A @ w)))
        H = A.T @ (A * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)  # a ridge that only matters on separation
        step = np.linalg.solve(H, A.T @ (y - p))
        w += step
        if np.abs(step).max() < 1e-10:
            break
    se = float(np.sqrt(np.linalg.inv(H)[1, 1]))
    auc = mannwhitneyu(x[y == 1], x[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum())
    out.update(intercept=float(w[0]), slope=float(w[1]), slope_se=se,
               p_value=float(2 * norm.sf(abs(w[1]) / se)), auc=float(auc))
    return out
