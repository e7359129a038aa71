"""Regenerate the README's pictures from real runs (a scratch MLflow store under /tmp).

    python docs/make_figures.py                     # all of them
    python docs/make_figures.py minima pattern      # only these

The two pictures of the MLflow UI (runs_table.png, filter_slider.png) are the browser test's
screenshots of the store that `make run` leaves:

    PIPELINE_BROWSER_STORE=. PIPELINE_SCREENSHOTS=/tmp/shots pytest -m browser tests/test_browser.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.tracking import figures
from pipeline.capacity import plots as capacity_plots
from pipeline.capacity import published, replication
from pipeline.capacity import stage as capacity
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.config.studies import CapacityConfig
from pipeline.diagnose import plots as diagnose_plots
from pipeline.diagnose import stage as diagnose
from pipeline.data.load import load_bundle
from pipeline.models.registry import build_model
from pipeline.train.loop import fit

OUT = Path(__file__).resolve().parent / "images"


def filters_forming(path: Path) -> None:
    """The 4-filter detector (seed 0): filters and linear weights at a few epochs."""
    cfg = resolve(TrainConfig(filters=(4,), seed=0, print_every=0))
    bundle = load_bundle(cfg)
    model = build_model(cfg.model, (1, cfg.width), 1, cfg.filters, cfg.kernel_size, seed=cfg.seed)
    shots = {0: (model.conv.weight.detach().clone(), model.linear.weight.detach().clone())}
    wanted = {10, 50, 150, 500}

    def on_epoch(epoch, _):
        if epoch in wanted:
            shots[epoch] = (model.conv.weight.detach().clone(), model.linear.weight.detach().clone())

    history = fit(model, bundle, cfg, torch.device("cpu"), on_epoch=on_epoch, echo=lambda s: None)
    fig, axes = figures.plt.subplots(1, len(shots), figsize=(3.1 * len(shots), 2.6))
    lim = figures.symmetric_limit(*[w.numpy() for w, _ in shots.values()])
    for ax, (epoch, (w, lin)) in zip(axes, sorted(shots.items())):
        ax.imshow(w[:, 0].numpy(), cmap=figures.CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        loss = "init" if epoch == 0 else f"loss {history.train_loss[epoch - 1]:.3f}"
        ax.set_title(f"epoch {epoch} ({loss})", fontsize=9)
        ax.set_xticks(range(5), [str(i - 2) for i in range(5)])
        ax.set_yticks(range(4), [f"F{i} ({float(lin[0, i]):+.1f})" for i in range(4)], fontsize=8)
    fig.suptitle("4 filters of the 1D detector forming (rows: filters, with their linear weight; "
                 "one becomes 0, +1, 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def capacity_heatmap(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = capacity.run(CapacityConfig(tracking_uri=f"sqlite:///{tmp}/mlflow.db"), echo=lambda s: None)
    fig = capacity_plots.heatmap_figure(result.summary)
    fig.savefig(path, dpi=80)


def minima(path: Path) -> None:
    """The default grid's diagnosis (k = 5, F = 1..8, 200 seeds): verdict shares against F beside a
    slice around a stuck seed and the paths from stuck seeds to solved ones."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        run = capacity.run(CapacityConfig(kernel_sizes=(5,), tracking_uri=uri), echo=lambda s: None)
        result = diagnose.run(DiagnoseConfig(capacity_run=run.run_id, tracking_uri=uri), echo=print)
    fig = diagnose_plots.verdict_figure(result.by_config)
    fig.axes[0].set_title("k = 5, 200 seeds per F: where the seeds end (verdict by derivatives and line searches)",
                          fontsize=9)
    fig.set_size_inches(7.5, 4)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def pattern(path: Path) -> None:
    """The published task, F = 1..7 x 500 seeds, trained and frozen convolution, beside the published curve."""
    with tempfile.TemporaryDirectory() as tmp:
        result = replication.run(PatternCapacityConfig(tracking_uri=f"sqlite:///{tmp}/mlflow.db"), echo=print)
    published.accuracy_figure(result.summary, 0.99).savefig(path, dpi=80)


FIGURES = {"filters_forming": filters_forming, "capacity_heatmap": capacity_heatmap, "minima": minima,
           "pattern": pattern}

if __name__ == "__main__":
    import sys

    OUT.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    np.set_printoptions(precision=3)
    for name in sys.argv[1:] or FIGURES:
        FIGURES[name](OUT / f"{name}.png")
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))}")
