"""The capacity study in words: run names and the descriptions that put its result on the front
page of the MLflow UI (the capacity parent run, and `main`'s)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def values_text(values: Sequence[int]) -> str:
    """'1–8' for a run of consecutive values, else '1,2,4'."""
    v = sorted(values)
    if len(v) > 2 and v == list(range(v[0], v[-1] + 1)):
        return f"{v[0]}–{v[-1]}"
    return ",".join(map(str, v))


def grid_label(filters: Sequence[int], kernel_sizes: Sequence[int]) -> str:
    """'F1–8 × k3,5,7': the grid, for run names."""
    return f"F{values_text(filters)} × k{values_text(kernel_sizes)}"


def headline_kernel(summary: pd.DataFrame) -> int:
    """The kernel size that the headline speaks of: the lab's 5 when it is in the grid."""
    ks = sorted(summary["kernel_size"].unique())
    return 5 if 5 in ks else int(ks[len(ks) // 2])


def headline(summary: pd.DataFrame, tau: float, focus: Sequence[int] = (4, 3)) -> str:
    """'With kernel size 5, 4 filters succeeded (loss < 0.05, every training example right) in 58% of 200 seeds,
    3 filters in 43%; from 9% with 1 filter to 86% with 8.' (``focus``: the filter counts to name first, the
    lab's contrast by default)."""
    k = headline_kernel(summary)
    rows = summary[summary["kernel_size"] == k].set_index("filters").sort_index()
    named = [f for f in focus if f in rows.index] or [int(rows.index[-1])]
    n = int(rows["n"].iloc[0])

    def share(f: int) -> str:
        return f"{rows.loc[f, 'p_success']:.0%}"

    first, *rest = named
    text = (f"With kernel size {k}, {first} filters succeeded (loss < {tau:g}, every training example right) in "
            f"{share(first)} of {n} seeds")
    text += "".join(f", {f} filter{'s' * (f != 1)} in {share(f)}" for f in rest)
    lo, hi = int(rows.index[0]), int(rows.index[-1])
    if len(rows) > len(named):
        text += f"; from {share(lo)} with {lo} filter{'s' * (lo != 1)} to {share(hi)} with {hi}"
    return text + "."


def lottery_text(lottery: pd.DataFrame) -> str:
    """One sentence on the independent-lottery model P(F) = 1 - (1 - p_k)^F, per kernel size."""
    rejected = [int(k) for k, part in lottery.groupby("kernel_size") if part["p_value"].iloc[0] < 0.05]
    verdict = ("the data reject it" + (f" for k = {', '.join(map(str, rejected))}" if rejected else "")
               if rejected else "the data do not reject it")
    return f"The independent-lottery model 1 − (1 − p_k)^F: {verdict} (chi² test, 5% level)."


def generalisation_text(summary: pd.DataFrame) -> str:
    """How the successful and the failed seeds do on the sequences they never trained on (means over the
    configurations of each seed's ``unseen_accuracy``, exact over the generator's distribution)."""
    parts = []
    for name, column in (("succeed", "unseen_accuracy_success"), ("fail", "unseen_accuracy_failed")):
        value = summary[column].mean()
        parts.append(f"seeds that {name} {'(none)' if np.isnan(value) else f'{value:.3f}'}")
    return ("On the sequences that the training set does not hold (exact accuracy over the generator's "
            f"distribution, renormalised to them), {parts[0]}, {parts[1]} (means over the configurations).")


def description(summary: pd.DataFrame, lottery: pd.DataFrame, tau: float) -> str:
    """The capacity parent's description (Markdown): the grid, the headline, the lottery verdict, generalisation."""
    Fs, ks = sorted(summary["filters"].unique()), sorted(summary["kernel_size"].unique())
    n = int(summary["n"].iloc[0])
    best = summary.sort_values("p_success", ascending=False).iloc[0]
    return (f"**How often does training the 1D detector succeed?** Every configuration of {grid_label(Fs, ks)} "
            f"trained from {n} seeds; a seed succeeds when its final training loss is < {tau:g} at 100% training "
            f"accuracy, and fails otherwise (loss ≥ {tau:g} or a training error; whether a failure sits at a local "
            f"minimum is what `pipeline diagnose` asks).\n\n{headline(summary, tau)} Best: F = {int(best.filters)}, "
            f"k = {int(best.kernel_size)} ({best.p_success:.0%}). {lottery_text(lottery)} "
            f"{generalisation_text(summary)}\n\nFigures: P(success) against F with 95% Wilson "
            "bands, the heatmap over F × k, and the final-loss histogram (bimodal: τ does not drive the result). "
            "One child run per configuration.")


def summary_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """``p_success_F4_k5`` per configuration: the front page's numbers, comparable across runs."""
    return {f"p_success_F{int(r.filters)}_k{int(r.kernel_size)}": float(r.p_success) for r in summary.itertuples()}
