"""The capacity studies' statistics: success, P(success) with Wilson intervals, the lottery fit.

The two 95% intervals of every study live here, once each: ``wilson`` for a proportion
(successes of n seeds) and ``mean_interval`` (Student's t) for a mean over seeds.

A seed succeeds when its final training loss is below tau and every training example is
right. ``summarize`` gives one row per (F, k); ``lottery_fit`` tests whether filters act as
independent lottery tickets, P(F) = 1 - (1 - p_k)^F.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

REPORTED_TAUS = (0.02, 0.05, 0.1)  # the thresholds every summary shows, to make clear tau does not drive it


def is_success(final_loss, train_accuracy, tau: float) -> np.ndarray:
    """Final training loss below tau and every training example right."""
    return (np.asarray(final_loss) < tau) & (np.asarray(train_accuracy) == 1.0)


class Estimate(NamedTuple):
    """Successes k of n, the rate p and its 95% Wilson interval [lo, hi]."""

    k: int
    n: int
    p: float
    lo: float
    hi: float


Z95 = 1.959963984540054  # scipy.special.ndtri(0.975), the two-sided 95% normal quantile (a test holds it)


def wilson(k: int, n: int) -> Estimate:
    """k successes of n as a rate with its 95% Wilson score interval (Newcombe 1998, as scipy's
    ``binomtest(k, n).proportion_ci(method="wilson")`` computes it, to the bit; without importing scipy.stats)."""
    k, n = int(k), int(n)
    p = k / n
    denom = 2 * (n + Z95**2)
    center = (2 * n * p + Z95**2) / denom
    delta = Z95 / denom * math.sqrt(4 * n * p * (1 - p) + Z95**2)
    return Estimate(k, n, p, 0.0 if k == 0 else center - delta, 1.0 if k == n else center + delta)


def mean_interval(values) -> tuple[float, float, float, float]:
    """(mean, standard deviation, low, high) of the 95% Student's t interval of the mean; nan spread for one value."""
    from scipy.special import stdtrit  # scipy.stats.t.ppf itself, without importing scipy.stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(v.std(ddof=1))
    half = float(stdtrit(len(v) - 1, 0.975)) * std / np.sqrt(len(v))
    return mean, std, mean - half, mean + half


def p_success(table: pd.DataFrame, tau: float) -> Estimate:
    """P(success) of the seeds in ``table`` at threshold ``tau``, with its Wilson interval."""
    ok = is_success(table["final_loss"], table["train_accuracy"], tau)
    return wilson(int(ok.sum()), len(table))


# --------------------------------------------------------------------------- summaries
def summarize(table: pd.DataFrame, tau: float) -> pd.DataFrame:
    """One row per configuration: P(success) with interval, at tau and the reported taus."""
    rows = []
    for (f, k), part in table.groupby(["filters", "kernel_size"], sort=True):
        est = p_success(part, tau)
        ok = is_success(part["final_loss"], part["train_accuracy"], tau)
        row = {"filters": f, "kernel_size": k, "n": est.n, "successes": est.k,
               "p_success": est.p, "p_success_lo": est.lo, "p_success_hi": est.hi}
        for t in sorted(set(REPORTED_TAUS) - {tau}):
            row[f"p_success_tau_{t:g}"] = p_success(part, t).p
        row["median_final_loss"] = float(part["final_loss"].median())
        for c in ("test_accuracy", "unseen_accuracy"):  # generalisation by outcome (tables of before lack unseen)
            values = part[c] if c in part else pd.Series(np.nan, index=part.index)
            row[f"{c}_success"] = float(values[ok].mean()) if ok.any() else np.nan
            row[f"{c}_failed"] = float(values[~ok].mean()) if (~ok).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def load_fit() -> None:
    """Import what ``lottery_fit`` needs (scipy.optimize, about 0.1 s) ahead of it: the stage does so while the grid
    trains, and fits once the last configuration is trained."""
    import scipy.optimize  # noqa: F401


def lottery_fit(summary: pd.DataFrame) -> pd.DataFrame:
    """Fit P(F) = 1 - (1 - p_k)^F per kernel size (binomial maximum likelihood).

    One row per (k, F): the fitted p_k, the predicted and observed P(success), and the
    deviation (observed - predicted, its z-score, whether the prediction lies in the
    observed Wilson interval), plus per k the chi-square of the fit and its p-value
    (degrees of freedom: number of filter counts - 1). Where the data cannot test the model
    (no seed succeeded, every seed did, or a single filter count) p_k is still fitted
    (0, 1 or exact) but chi2 and p_value are NaN and ``untestable`` says why.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import chdtrc  # scipy.stats.chi2.sf itself, without importing scipy.stats

    rows = []
    for k, part in summary.groupby("kernel_size", sort=True):
        F = part["filters"].to_numpy(float)
        succ, n = part["successes"].to_numpy(float), part["n"].to_numpy(float)

        def nll(p: float) -> float:
            P = np.clip(1 - (1 - p) ** F, 1e-12, 1 - 1e-12)
            return -float(np.sum(succ * np.log(P) + (n - succ) * np.log1p(-P)))

        untestable = ("no seed succeeded" if succ.sum() == 0 else "every seed succeeded" if (succ == n).all()
                      else "one filter count" if len(F) < 2 else "")
        if succ.sum() == 0 or (succ == n).all():
            p_k = float(succ.sum() > 0)  # the maximum-likelihood estimate, at the edge
        else:
            p_k = float(minimize_scalar(nll, bounds=(1e-9, 1 - 1e-9), method="bounded",
                                        options={"xatol": 1e-10}).x)
        pred = 1 - (1 - p_k) ** F
        obs = succ / n
        se = np.sqrt(np.clip(pred * (1 - pred), 1e-12, None) / n)
        z = (obs - pred) / se
        stat = float("nan") if untestable else float(np.sum(z**2))
        dof = max(len(F) - 1, 1)
        for i in range(len(F)):
            rows.append({
                "kernel_size": k, "filters": int(F[i]), "p_k": p_k, "predicted": float(pred[i]),
                "observed": float(obs[i]), "deviation": float(obs[i] - pred[i]), "z": float(z[i]),
                "inside_interval": bool(part["p_success_lo"].iloc[i] <= pred[i] <= part["p_success_hi"].iloc[i]),
                "chi2": stat, "dof": dof, "p_value": float(chdtrc(dof, stat)), "untestable": untestable,
            })
    return pd.DataFrame(rows)
