"""The image capacity study's figures: accuracy over F x k, accuracy against parameter count,
learning curves per cell, and the per-seed spread (how wide the lottery is at each size).

Each takes the tables that the stage logs (``capacity_table.csv``, ``tables/summary.csv``,
``tables/curves_summary.csv``), so a notebook draws them again from the run's artifacts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def heatmap_figure(summary: pd.DataFrame):
    """Mean test accuracy over F (columns) x k (rows), each cell with its 95% interval and n."""
    from pipeline.capacity.plots import grid_heatmap

    return grid_heatmap(summary, "test_accuracy_mean", "{:.3f}", label="mean test accuracy",
                        title="test accuracy: mean over seeds [95% interval]", interval="test_accuracy")


def capacity_curve_figure(table: pd.DataFrame, summary: pd.DataFrame):
    """Test accuracy against parameter count: every seed a dot, the mean a line with its 95% band, per k."""
    from pipeline.tracking.figures import plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    rng = np.random.default_rng(0)
    for k, part in summary.groupby("kernel_size", sort=True):
        part = part.sort_values("num_parameters")
        line, = ax.plot(part["num_parameters"], part["test_accuracy_mean"], "o-", label=f"k = {k}: mean")
        ax.fill_between(part["num_parameters"], part["test_accuracy_lo"], part["test_accuracy_hi"],
                        color=line.get_color(), alpha=0.2)
        seeds = table[table["kernel_size"] == k]
        jitter = np.exp(rng.uniform(-0.03, 0.03, len(seeds)))  # multiplicative: the x axis is logarithmic
        ax.scatter(seeds["num_parameters"] * jitter, seeds["test_accuracy"], s=8, alpha=0.35,
                   color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("parameters per model")
    ax.set_ylabel("test accuracy")
    ax.set_title("capacity curve: dots = seeds, line = mean with 95% band")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves_figure(curves: pd.DataFrame):
    """Training loss and validation accuracy per epoch, mean over seeds with its 95% band, one line per cell."""
    from pipeline.tracking.figures import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    cells = curves.groupby(["kernel_size", "filters"], sort=True)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, curves["filters"].nunique())))
    color_of = dict(zip(sorted(curves["filters"].unique()), colors))
    styles = dict(zip(sorted(curves["kernel_size"].unique()), ["-", "--", ":", "-."] * 4))
    for ax, metric, label in ((axes[0], "train_loss", "training loss"), (axes[1], "val_accuracy", "validation accuracy")):
        for (k, f), part in cells:
            ax.plot(part["epoch"], part[metric], styles[k], color=color_of[f], label=f"F={f} k={k}")
            ax.fill_between(part["epoch"], part[f"{metric}_lo"], part[f"{metric}_hi"], color=color_of[f], alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("learning curves: mean over seeds with 95% band, per (F, k)")
    fig.tight_layout()
    return fig


def spread_figure(table: pd.DataFrame, margin: float):
    """Every seed's test accuracy per cell (a strip plot), the cell's mean, and its bad runs in red."""
    from pipeline.capacity.images.stats import bad_runs
    from pipeline.tracking.figures import plt

    cells = table[["filters", "kernel_size"]].drop_duplicates().sort_values(["kernel_size", "filters"])
    bad = bad_runs(table, margin)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(cells), 4.5))
    rng = np.random.default_rng(0)
    for x, (f, k) in enumerate(cells.itertuples(index=False)):
        rows = (table["filters"] == f) & (table["kernel_size"] == k)
        acc = table.loc[rows, "test_accuracy"].to_numpy()
        jitter = x + rng.uniform(-0.18, 0.18, len(acc))
        is_bad = bad[rows].to_numpy()
        ax.scatter(jitter[~is_bad], acc[~is_bad], s=12, alpha=0.6, color="tab:blue")
        ax.scatter(jitter[is_bad], acc[is_bad], s=14, alpha=0.8, color="tab:red")
        ax.plot([x - 0.3, x + 0.3], [acc.mean()] * 2, color="black", lw=1.5)
    ax.set_xticks(range(len(cells)), [f"F{f}\nk{k}" for f, k in cells.itertuples(index=False)], fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"per-seed spread (red: more than {margin:g} below the cell's best seed; bar: mean)")
    fig.tight_layout()
    return fig
