"""The diagnose stage's tables over seeds (filter classes, tickets, landscape pairs) and its console report."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.diagnose import anatomy, landscape
from pipeline.diagnose.verdicts import GROUPS, VERDICTS, Tolerances

MINIMA = GROUPS["minimum"]


def class_shares(filter_table: pd.DataFrame) -> pd.DataFrame:
    """Per (F, k, outcome failed|solved): the share of each filter class, and how many filters and seeds."""
    t = filter_table.assign(outcome=np.where(filter_table["success"], "solved", "failed"))
    counts = t.groupby(["filters", "kernel_size", "outcome", "class"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(anatomy.CLASSES), fill_value=0)
    out = counts.div(counts.sum(axis=1), axis=0)
    out["n_filters"] = counts.sum(axis=1)
    out["n_seeds"] = (out["n_filters"] // out.index.get_level_values("filters")).astype(int)
    return out.reset_index()


def ticket_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Logistic fit of success on the best initial alignment, per (F, k) and pooled per k ('all': F as a
    second covariate is left out, so the pooled slope mixes F's effect in)."""
    rows = []
    for k, part in table.groupby("kernel_size"):
        for f, sub in part.groupby("filters"):
            rows.append({"kernel_size": k, "filters": str(f),
                         **anatomy.logistic_fit(sub["initial_alignment"], sub["success"])})
        rows.append({"kernel_size": k, "filters": "all", **anatomy.logistic_fit(part["initial_alignment"],
                                                                                 part["success"])})
    return pd.DataFrame(rows)


def landscape_pieces(measured: list, table: pd.DataFrame, pairs: int, points: int) -> tuple[pd.DataFrame, list, list]:
    """Straight paths for up to ``pairs`` (failed, solved) pairs per configuration, and 2D slices around one
    stuck seed and one solved seed (of F = 3 if diagnosed, the lab's case, else the first F with both)."""
    rows, curves, slices = [], [], []
    for m in measured:
        f, k = m.trajectory.filters, m.trajectory.kernel_size
        part = table[(table["filters"] == f) & (table["kernel_size"] == k)].reset_index(drop=True)
        stuck = part.index[part["verdict"].isin(MINIMA)].tolist()
        solved = part.index[part["success"]].tolist()
        for i, j in list(zip(stuck, solved))[:pairs]:
            start = m.trajectory.theta[i]
            end = landscape.align(start, m.trajectory.theta[j], f, k)
            t, loss = landscape.path_losses(m.loss, start, end)
            rows.append({"filters": f, "kernel_size": k, "failed_seed": int(part.at[i, "seed"]),
                         "failed_verdict": part.at[i, "verdict"], "solved_seed": int(part.at[j, "seed"]),
                         "loss_failed": loss[0], "loss_solved": loss[-1], "max_loss": loss.max(),
                         "barrier": landscape.barrier(t, loss)})
            curves.append({"filters": f, "t": t, "loss": loss})
    by_f = {m.trajectory.filters: m for m in measured}
    candidates = [3] + sorted(by_f)
    for f in candidates:
        m = by_f.get(f)
        if m is None:
            continue
        k = m.trajectory.kernel_size
        part = table[(table["filters"] == f) & (table["kernel_size"] == k)].reset_index(drop=True)
        stuck = [part.index[part["verdict"] == v].tolist() for v in MINIMA]
        stuck = stuck[0] or stuck[1]  # a smooth minimum if there is one
        solved = part.index[part["success"]].tolist()
        if stuck and solved:
            for i, what in ((stuck[0], part.at[stuck[0], "verdict"]), (solved[0], "solved")):
                a, Z = landscape.slice_2d(m.loss, m.trajectory.theta[i], f, k, points)
                slices.append({"a": a, "loss": Z, "title": f"F = {f}, k = {k}, seed "
                               f"{part.at[i, 'seed']} ({what}, loss {Z[len(a) // 2, len(a) // 2]:.3f})"})
            break
    columns = ["filters", "kernel_size", "failed_seed", "failed_verdict", "solved_seed", "loss_failed", "loss_solved",
               "max_loss", "barrier"]
    return pd.DataFrame(rows, columns=columns), curves, slices


def report(table: pd.DataFrame, by_config: pd.DataFrame, sensitivity: pd.DataFrame, classes: pd.DataFrame,
           tickets: pd.DataFrame, paths: pd.DataFrame, tol: Tolerances, seconds: float, replay_line: str,
           long_factor: int) -> list[str]:
    """The console summary: verdict shares per (F, k), the long run, tolerance sensitivity, filter classes,
    tickets and barriers; ``replay_line`` says how the replay compares with the capacity run."""
    lines = [f"{len(table)} seeds diagnosed in {seconds:.1f} s; {replay_line}",
             f"tolerances: delta = {tol.delta:g} (J must drop by more), r = {tol.radius:g} (within this distance), "
             f"L = {tol.last_epochs} epochs; implied |grad| < {tol.delta / tol.radius:g}, curvature > "
             f"{-2 * tol.delta / tol.radius ** 2:g}", "",
             "verdict shares per configuration (long run: failed seeds trained "
             f"{long_factor}x longer at lr/{long_factor}):",
             f"{'F':>4} {'k':>3}  " + "".join(f"{v:>14s}" for v in VERDICTS) + "   escaped in the long run"
             + "   [minimum = local minimum + kink]"]
    for _, r in by_config.iterrows():
        part = table[(table["filters"] == r["filters"]) & (table["kernel_size"] == r["kernel_size"])]
        failed = part[~part["success"]]
        lines.append(f"{int(r['filters']):4d} {int(r['kernel_size']):3d}  " + "".join(f"{r[v]:14.3f}" for v in VERDICTS)
                     + f"   {int(failed['escaped'].sum()):>4d}/{len(failed):<4d}"
                     + f"   [{r['local minimum'] + r['kink']:.3f}]")
    return lines + _evidence_lines(table) + _closing_lines(sensitivity, classes, tickets, paths, tol)


def _evidence_lines(table: pd.DataFrame) -> list[str]:
    """How many failed seeds escaped in the long run, and the medians of the evidence per verdict."""
    failed = table[~table["success"]]
    lines = ["", f"all failed seeds: {len(failed)}, escaped in the long run: {int(failed['escaped'].sum())} "
             f"({failed['escaped'].mean() if len(failed) else 0:.3f})", "",
             "the evidence, medians per verdict: |grad J| at the end, averaged over the last L epochs, path / net "
             "move over them, smallest eigenvalue, best line-search drops, loss change in the long run:"]
    for verdict, part in failed.assign(zigzag=failed["path_length"] / failed["moved"].clip(lower=1e-12),
                                       long_change=failed["long_loss"] - failed["loss"]).groupby("verdict"):
        m = part.median(numeric_only=True)
        lines.append(f"  {verdict:>13s} ({len(part):4d}): |g| {m['grad_norm']:.2g}, "
                     f"mean |g| {m['mean_grad_norm']:.2g}, path/move {m['zigzag']:.3g}, "
                     f"lambda_min {m['hessian_min']:.2g}, drops {m['drop_gradient']:.2g} and "
                     f"{m['drop_curvature']:.2g}, long run {m['long_change']:+.2g}")
    return lines


def _closing_lines(sensitivity: pd.DataFrame, classes: pd.DataFrame, tickets: pd.DataFrame, paths: pd.DataFrame,
                   tol: Tolerances) -> list[str]:
    """Tolerance sensitivity, filter classes, tickets and barriers."""
    lines = ["", "verdict shares of all seeds with each tolerance 10x smaller and larger:",
             f"{'tolerance':>12} {'value':>8}  " + "".join(f"{v:>14s}" for v in VERDICTS)
             + "   [minimum]  [still moving]"]
    for _, r in sensitivity.iterrows():
        lines.append(f"{r['tolerance']:>12} {r['value']:8.3g}  " + "".join(f"{r[v]:14.3f}" for v in VERDICTS)
                     + f"   {r['[minimum]']:9.3f}  {r['[still moving]']:14.3f}")
    lines += ["", "filter classes (share of filters) of failed | solved seeds:"]
    for (f, k), part in classes.groupby(["filters", "kernel_size"]):
        cells = []
        for outcome in ("failed", "solved"):
            row = part[part["outcome"] == outcome]
            cells.append("none" if row.empty else ", ".join(f"{c} {row[c].iloc[0]:.2f}" for c in anatomy.CLASSES)
                         + f" ({int(row['n_seeds'].iloc[0])} seeds)")
        lines.append(f"  F = {f}, k = {k}: " + " | ".join(cells))
    lines += ["", "does the best initial alignment with 0,+1,0 predict success? (logistic slope, p, AUC)"]
    for r in tickets.itertuples(index=False):
        lines.append(f"  k = {r.kernel_size}, F = {r.filters}: {ticket_text(r)} ({r.successes}/{r.n} solved)")
    if len(paths):
        lines += ["", f"straight paths from {len(paths)} stuck seeds to solved ones: barrier > delta on "
                  f"{int((paths['barrier'] > tol.delta).sum())}, median barrier {paths['barrier'].median():.3g}, "
                  f"largest {paths['barrier'].max():.3g}"]
    return lines


def ticket_text(r: Any) -> str:
    """A ticket fit in words; where it cannot be fitted (every seed solved, none, or under 3 seeds), why."""
    if r.n < 3:
        return "not fitted: fewer than 3 seeds"
    if r.successes in (0, r.n):
        return f"not fitted: {'no' if r.successes == 0 else 'every'} seed solved, nothing to predict"
    return f"slope {r.slope:.2f} +- {r.slope_se:.2f}, p = {r.p_value:.2g}, AUC = {r.auc:.2f}"
