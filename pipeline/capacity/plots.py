"""The capacity study's figures: P(success) over F x k, against F with the lottery fit, and
the histogram of final losses (which shows why the threshold tau does not drive the result)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.capacity.stats import REPORTED_TAUS, is_success


def heatmap_figure(summary: pd.DataFrame, rows: str = "kernel_size", row_label: str = "kernel size k",
                   title: str = "P(success) with 95% Wilson interval and number of seeds"):
    """P(success) over F (columns) x k (rows; or another column of ``summary``), each cell with its interval and n."""
    return grid_heatmap(summary, "p_success", "{:.2f}", vmin=0, vmax=1, label="P(success)", title=title,
                        rows=rows, row_label=row_label)


def grid_heatmap(summary: pd.DataFrame, value: str, fmt: str, label: str, title: str,
                 vmin: float | None = None, vmax: float | None = None, interval: str | None = None,
                 rows: str = "kernel_size", row_label: str = "kernel size k"):
    """``value`` over F (columns) x k (rows; or another column of ``summary``), each cell with its
    interval (columns ``interval``_lo and _hi, default ``value``'s) and n."""
    from pipeline.tracking.figures import plt

    interval = interval or value
    Fs, ks = sorted(summary["filters"].unique()), sorted(summary[rows].unique())
    grid = summary.set_index([rows, "filters"])
    P = np.array([[grid.loc[(k, f), value] for f in Fs] for k in ks])
    lo, hi = (np.nanmin(P) if vmin is None else vmin), (np.nanmax(P) if vmax is None else vmax)
    fig, ax = plt.subplots(figsize=(1.4 + 1.25 * len(Fs), 1.2 + 1.0 * len(ks)))
    im = ax.imshow(P, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    for i, k in enumerate(ks):
        for j, f in enumerate(Fs):
            row = grid.loc[(k, f)]
            text = "\n".join([fmt.format(row[value]), f"[{fmt.format(row[interval + '_lo'])}, "
                               f"{fmt.format(row[interval + '_hi'])}]", f"n={int(row['n'])}"])
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if row[value] < lo + 0.6 * (hi - lo) else "black")
    ax.set_xticks(range(len(Fs)), [str(f) for f in Fs])
    ax.set_yticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("filters F")
    ax.set_ylabel(row_label)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    return fig


def curves_figure(summary: pd.DataFrame, fit: pd.DataFrame):
    """P(success) against F per k, with Wilson bands and the lottery fit (dashed)."""
    from pipeline.tracking.figures import plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, part in summary.groupby("kernel_size", sort=True):
        F = part["filters"].to_numpy()
        line, = ax.plot(F, part["p_success"], "o-", label=f"k = {k}")
        ax.fill_between(F, part["p_success_lo"], part["p_success_hi"], color=line.get_color(), alpha=0.2)
        p_k = fit.loc[fit["kernel_size"] == k, "p_k"].iloc[0]
        Fc = np.linspace(min(F), max(F), 100)
        ax.plot(Fc, 1 - (1 - p_k) ** Fc, "--", color=line.get_color(), alpha=0.8,
                label=f"lottery 1-(1-p)^F, p = {p_k:.3f}")
    ax.set_xlabel("filters F")
    ax.set_ylabel("P(success)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("P(success) with 95% Wilson bands; dashed: independent-lottery fit")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def histogram_figure(table: pd.DataFrame, tau: float):
    """Final training losses (log scale): bimodal, and every reported tau falls in the gap."""
    from pipeline.tracking.figures import plt

    loss = table["final_loss"].to_numpy()
    lo, hi = max(loss.min(), 1e-6), max(loss.max(), 1e-5)
    bins = np.logspace(np.log10(lo) - 0.05, np.log10(hi) + 0.05, 60)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([part["final_loss"] for _, part in table.groupby("kernel_size", sort=True)], bins=bins, stacked=True,
            label=[f"k = {k}" for k in sorted(table["kernel_size"].unique())], histtype="stepfilled")
    for t in sorted(set(REPORTED_TAUS) | {tau}):
        p = is_success(table["final_loss"], table["train_accuracy"], t).mean()
        ax.axvline(t, color="black", ls="-" if t == tau else ":", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.97, f" τ={t:g}\n P={p:.3f}", fontsize=7, va="top")
    ax.set_xscale("log")
    ax.set_xlabel("final training loss")
    ax.set_ylabel("seeds")
    ax.set_title(f"final losses of {len(table)} trainings (P = overall success rate at each τ)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig
