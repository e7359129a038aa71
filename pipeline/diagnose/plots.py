"""The diagnose stage's figures: verdict shares against F, Hessian eigenvalues, filter classes,
the ticket curve, loss along paths between seeds and a 2D slice around a stuck point."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.diagnose.anatomy import CLASSES
from pipeline.diagnose.verdicts import VERDICTS

VERDICT_COLOURS = dict(zip(VERDICTS, ("tab:green", "tab:red", "tab:purple", "tab:orange", "tab:blue")))
CLASS_COLOURS = dict(zip(CLASSES, ("tab:green", "tab:orange", "tab:gray", "tab:cyan")))


def _panels(n: int, width: float = 5.0, height: float = 3.8):
    from pipeline.tracking.figures import plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def verdict_figure(by_config: pd.DataFrame):
    """Stacked shares of the verdicts against F, one panel per kernel size."""
    ks = sorted(by_config["kernel_size"].unique())
    fig, axes = _panels(len(ks))
    for ax, k in zip(axes, ks):
        part = by_config[by_config["kernel_size"] == k].sort_values("filters")
        bottom = np.zeros(len(part))
        for v in VERDICTS:
            ax.bar(part["filters"], part[v], bottom=bottom, color=VERDICT_COLOURS[v], label=v)
            bottom += part[v].to_numpy()
        ax.set_xlabel("filters F")
        ax.set_ylabel("share of seeds")
        ax.set_title(f"k = {k}: what the seeds end at", fontsize=10)
        ax.set_xticks(part["filters"])
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def eigenvalue_figure(table: pd.DataFrame):
    """Histograms of the Hessian's smallest and largest eigenvalues, failed seeds against solved."""
    fig, axes = _panels(2)
    for ax, column in zip(axes, ("hessian_min", "hessian_max")):
        values = table[column].to_numpy()
        lo, hi = min(values.min(), 0.0), max(values.max(), 0.0)
        edges = [0.0]
        if lo < 0:
            edges = list(-np.logspace(np.log10(-lo), -6, 30)) + edges
        if hi > 0:
            edges = edges + list(np.logspace(-6, np.log10(hi), 30))
        edges = np.unique(edges)
        for ok, label, colour in ((False, "failed", "tab:red"), (True, "solved", "tab:green")):
            part = table.loc[table["success"] == ok, column]
            if len(part):
                ax.hist(part, bins=edges, alpha=0.6, color=colour, label=f"{label} ({len(part)})")
        ax.set_xscale("symlog", linthresh=1e-6)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{column.replace('_', ' ')} eigenvalue of the objective's Hessian")
        ax.set_ylabel("seeds")
        ax.legend(fontsize=8)
    fig.suptitle("Hessian eigenvalues at the final weights (weight decay adds its wd to each)", fontsize=10)
    fig.tight_layout()
    return fig


def class_figure(class_shares: pd.DataFrame):
    """Per F, the classes of the filters of failed seeds (left bar) and of solved seeds (right bar)."""
    ks = sorted(class_shares["kernel_size"].unique())
    fig, axes = _panels(len(ks))
    for ax, k in zip(axes, ks):
        part = class_shares[class_shares["kernel_size"] == k]
        for offset, outcome, hatch in ((-0.2, "failed", "//"), (0.2, "solved", "")):
            rows = part[part["outcome"] == outcome].sort_values("filters")
            bottom = np.zeros(len(rows))
            for c in CLASSES:
                ax.bar(rows["filters"] + offset, rows[c], width=0.38, bottom=bottom, color=CLASS_COLOURS[c],
                       hatch=hatch, edgecolor="white", label=c if outcome == "failed" else None)
                bottom += rows[c].to_numpy()
        ax.set_xlabel("filters F (left bar: failed seeds, hatched; right: solved)")
        ax.set_ylabel("share of filters")
        ax.set_title(f"k = {k}: what the filters became", fontsize=10)
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def ticket_figure(table: pd.DataFrame, fits: pd.DataFrame):
    """Success against the best initial alignment with the pattern: the logistic fit per F, and binned rates."""
    fig, axes = _panels(len(fits["kernel_size"].unique()), width=6.0)
    from pipeline.tracking.figures import plt

    for ax, (k, kfits) in zip(axes, fits.groupby("kernel_size")):
        cmap = plt.get_cmap("viridis")
        kfits = kfits[kfits["filters"] != "all"]
        for i, row in enumerate(kfits.itertuples()):
            part = table[(table["kernel_size"] == k) & (table["filters"] == int(row.filters))]
            colour = cmap(i / max(len(kfits) - 1, 1))
            x = part["initial_alignment"].to_numpy()
            bins = np.quantile(x, np.linspace(0, 1, 6))
            which = np.clip(np.searchsorted(bins, x, side="right") - 1, 0, 4)
            centres = [x[which == b].mean() for b in range(5) if (which == b).any()]
            rates = [part["success"].to_numpy()[which == b].mean() for b in range(5) if (which == b).any()]
            ax.plot(centres, rates, "o", color=colour, alpha=0.6)
            if not np.isnan(row.slope):
                xs = np.linspace(x.min(), x.max(), 100)
                ax.plot(xs, 1 / (1 + np.exp(-(row.intercept + row.slope * xs))), color=colour,
                        label=f"F = {row.filters}: slope {row.slope:.1f}, AUC {row.auc:.2f}")
        ax.set_xlabel("best initial alignment: max over filters, taps of w_j / |w|")
        ax.set_ylabel("P(success)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"k = {k}: does the luck show at initialisation? (dots: quintiles)", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def path_figure(curves: list[dict]):
    """Training loss along straight paths from failed seeds (t = 0) to solved ones (t = 1), filters aligned."""
    fig, axes = _panels(1, width=7.0)
    ax = axes[0]
    from pipeline.tracking.figures import plt

    Fs = sorted({c["filters"] for c in curves})
    cmap = plt.get_cmap("viridis")
    for c in curves:
        colour = cmap(Fs.index(c["filters"]) / max(len(Fs) - 1, 1))
        ax.plot(c["t"], c["loss"], color=colour, alpha=0.7,
                label=f"F = {c['filters']}" if c is next(d for d in curves if d["filters"] == c["filters"]) else None)
    ax.set_xlabel("t: (1 - t)·failed seed + t·solved seed (solved seed's filters permuted to match)")
    ax.set_ylabel("training loss")
    ax.set_title("is there a barrier between a stuck seed and a solved one?", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def slice_figure(slices: list[dict]):
    """Contours of the training loss on 2D filter-normalised slices (Li et al. 2018) around the given points."""
    fig, axes = _panels(len(slices), width=5.0, height=4.4)
    for ax, s in zip(axes, slices):
        a, Z = s["a"], s["loss"]
        levels = np.quantile(Z, np.linspace(0, 1, 25))
        cs = ax.contourf(a, a, Z, levels=np.unique(levels), cmap="viridis")
        ax.contour(a, a, Z, levels=np.unique(levels), colors="white", linewidths=0.3)
        ax.plot(0, 0, "r*", ms=10)
        ax.set_title(s["title"], fontsize=9)
        ax.set_xlabel("d1 (filter-normalised)")
        ax.set_ylabel("d2")
        fig.colorbar(cs, ax=ax, label="training loss")
    fig.tight_layout()
    return fig
