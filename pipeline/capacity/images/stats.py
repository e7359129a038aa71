"""Test accuracy over seeds, per cell of the image grid: mean, spread, interval, bad runs.

The 95% interval is Student's t interval of the mean over the cell's seeds
(``capacity.stats.mean_interval``), kept within [0, 1] (it says how well S seeds pin the cell's mean down; the spread of single seeds is the
standard deviation, min and max). A seed is a *bad run* when its test accuracy lies more than ``margin`` below the
best seed of its cell; their share comes with a Wilson interval (``capacity.stats.wilson``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.capacity.stats import mean_interval, wilson

CELL = ["filters", "kernel_size"]


def bad_runs(table: pd.DataFrame, margin: float) -> pd.Series:
    """Whether each seed's test accuracy is more than ``margin`` below its cell's best."""
    best = table.groupby(CELL)["test_accuracy"].transform("max")
    return table["test_accuracy"] < best - margin


def summarize(table: pd.DataFrame, margin: float) -> pd.DataFrame:
    """One row per (F, k): test accuracy over seeds, parameter count, bad-run share."""
    rows = []
    bad = bad_runs(table, margin)
    for (f, k), part in table.groupby(CELL, sort=True):
        mean, std, lo, hi = mean_interval(part["test_accuracy"])
        lo, hi = np.clip([lo, hi], 0.0, 1.0)  # an accuracy: few seeds can stretch the t interval past [0, 1]
        share = wilson(int(bad[part.index].sum()), len(part))
        rows.append({
            "filters": f, "kernel_size": k, "layer_filters": part["layer_filters"].iloc[0],
            "num_parameters": int(part["num_parameters"].iloc[0]), "n": len(part),
            "test_accuracy_mean": mean, "test_accuracy_std": std, "test_accuracy_lo": float(lo),
            "test_accuracy_hi": float(hi),
            "test_accuracy_min": float(part["test_accuracy"].min()),
            "test_accuracy_max": float(part["test_accuracy"].max()),
            "bad_runs": share.k, "bad_run_share": share.p, "bad_run_share_lo": share.lo,
            "bad_run_share_hi": share.hi, "final_loss_mean": float(part["final_loss"].mean()),
            "val_accuracy_mean": float(part["val_accuracy"].mean()),
        })
    return pd.DataFrame(rows)


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (F, k, epoch): each curve's mean over seeds with its 95% interval (``<metric>_lo``/``_hi``)."""
    rows = []
    metrics = [c for c in curves.columns if c not in (*CELL, "seed", "epoch")]
    for (f, k, epoch), part in curves.groupby([*CELL, "epoch"], sort=True):
        row = {"filters": f, "kernel_size": k, "epoch": epoch}
        for m in metrics:
            row[m], _, row[f"{m}_lo"], row[f"{m}_hi"] = mean_interval(part[m])
        rows.append(row)
    return pd.DataFrame(rows)


def report(summary: pd.DataFrame, margin: float, seconds: float, seed_epochs: int) -> list[str]:
    """The console summary: one line per cell, then how far apart the smallest and largest F are."""
    n = int(summary["n"].iloc[0])
    lines = [f"{seed_epochs} seed-epochs in {seconds:.1f} s ({1000 * seconds / seed_epochs:.1f} ms each)", "",
             f"test accuracy over {n} seeds: mean [95% interval], std, min, max; bad runs: more than "
             f"{margin:g} below the cell's best seed",
             f"{'F':>4} {'k':>3} {'filters':>10} {'params':>8}  {'mean':>6} {'[95% interval]':>17} {'std':>6} "
             f"{'min':>6} {'max':>6}  bad runs"]
    for r in summary.itertuples():
        lines.append(f"{r.filters:4d} {r.kernel_size:3d} {r.layer_filters:>10} {r.num_parameters:8d}  "
                     f"{r.test_accuracy_mean:6.4f} [{r.test_accuracy_lo:6.4f}, {r.test_accuracy_hi:6.4f}] "
                     f"{r.test_accuracy_std:6.4f} {r.test_accuracy_min:6.4f} {r.test_accuracy_max:6.4f}  "
                     f"{r.bad_runs}/{r.n}")
    lo_f, hi_f = summary["filters"].min(), summary["filters"].max()
    if lo_f != hi_f:
        lines.append("")
        for k, part in summary.groupby("kernel_size", sort=True):
            a, b = (part[part["filters"] == f].iloc[0] for f in (lo_f, hi_f))
            apart = "separate" if separated(a, b) else "overlap"
            lines.append(f"k = {k}: F = {lo_f} -> {hi_f}: mean test accuracy {a.test_accuracy_mean:.4f} -> "
                         f"{b.test_accuracy_mean:.4f}; the 95% intervals {apart}")
    return lines


def separated(a, b) -> bool:
    """Whether two summary rows' 95% intervals are disjoint (never with a single seed)."""
    return bool(a.test_accuracy_hi < b.test_accuracy_lo or b.test_accuracy_hi < a.test_accuracy_lo)
