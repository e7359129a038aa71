"""The published task's numbers (read off its figure) and the figures of stage ``capacity-pattern``:
our mean test accuracy beside the published curve, P(accuracy >= success) over F x variant,
and the histogram of test accuracies (seeds either solve the task or stay near chance)."""
from __future__ import annotations

import numpy as np
import pandas as pd

# Mean test accuracy (%) for F = 1..7, read off the published figure (conv1_experiment.png at
# commit 3cb3a0d; its x axis is the number of trained parameters, 5F + 1 and F + 1): each
# segment's centre line fitted over its pixel columns, calibrated on the tick marks, +-0.3.
PUBLISHED = {"trained": (74.3, 87.5, 95.3, 98.0, 99.4, 99.5, 99.9),
             "frozen": (68.5, 81.1, 86.8, 91.9, 93.7, 96.7, 97.3)}
PUBLISHED_SOURCE = "https://github.com/rom1mouret/exploration/blob/master/conv1_experiment.png"

COLOURS = {"trained": "tab:blue", "frozen": "tab:orange"}
LABELS = {"trained": "conv trained (published: Naive)", "frozen": "conv frozen (published: RandomConv)"}


def accuracy_figure(summary: pd.DataFrame, success: float):
    """Left: mean test accuracy against trained parameters, ours (band: 95% interval) and the published
    curve (dashed); right: the share of seeds at >= success against F, with Wilson bands."""
    from pipeline.tracking.figures import plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    for variant, part in summary.groupby("variant", sort=False):
        c, x = COLOURS[variant], part["num_parameters"].to_numpy()
        left.plot(x, 100 * part["mean_accuracy"], "o-", color=c, label=f"ours: {LABELS[variant]}")
        left.fill_between(x, 100 * part["mean_accuracy_lo"], 100 * part["mean_accuracy_hi"], color=c, alpha=0.2)
        pub = part.dropna(subset=["published_mean_accuracy"])
        left.plot(pub["num_parameters"], 100 * pub["published_mean_accuracy"], "x--", color=c, alpha=0.8,
                  label=f"published (read off its figure): {variant}")
        F = part["filters"].to_numpy()
        right.plot(F, part["p_success"], "o-", color=c, label=LABELS[variant])
        right.fill_between(F, part["p_success_lo"], part["p_success_hi"], color=c, alpha=0.2)
    left.set_xlabel("number of trained parameters (5F + 1 trained, F + 1 frozen)")
    left.set_ylabel("mean test accuracy (%)")
    left.set_title("y = [1, 1, x, 1] in 64 noisy values: ours vs published", fontsize=10)
    left.legend(fontsize=7)
    right.set_xlabel("filters F")
    right.set_ylabel(f"share of seeds with test accuracy >= {success:.0%}")
    right.set_ylim(-0.02, 1.02)
    right.set_title("P(success) with 95% Wilson bands", fontsize=10)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def success_heatmap(summary: pd.DataFrame, success: float):
    """P(test accuracy >= success) over F (columns) x variant (rows), each cell with its interval and n."""
    from pipeline.capacity.plots import heatmap_figure

    return heatmap_figure(summary, rows="variant", row_label="convolution",
                          title=f"P(test accuracy >= {success:.0%}) with 95% Wilson interval")


def histogram_figure(table: pd.DataFrame, success: float):
    """Test accuracies of every seed, per variant: a peak at chance, one near 100%, little between."""
    from pipeline.tracking.figures import plt

    fig, axes = plt.subplots(1, table["variant"].nunique(), figsize=(5.5 * table["variant"].nunique(), 3.6),
                             squeeze=False)
    bins = np.linspace(0.3, 1.0, 57)
    for ax, (variant, part) in zip(axes[0], table.groupby("variant", sort=False)):
        Fs = sorted(part["filters"].unique())
        ax.hist([part.loc[part["filters"] == f, "test_accuracy"].clip(lower=0.3) for f in Fs], bins=bins,
                stacked=True, label=[f"F = {f}" for f in Fs])
        ax.axvline(success, color="black", lw=1, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("test accuracy (below 0.3 drawn at 0.3)")
        ax.set_ylabel("seeds")
        ax.set_title(f"conv {variant}: {len(part)} trainings", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
