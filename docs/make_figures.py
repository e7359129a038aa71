"""Regenerate the pages' pictures and numbers from real runs (a scratch MLflow store under /tmp).

    python docs/make_figures.py                     # all of them (`make docs`): several minutes
    python docs/make_figures.py minima pattern      # only these pictures
    python docs/make_figures.py p-success-grid      # only this generated block of README.md / docs/*.md
    python docs/make_figures.py --list              # the names, with the slow ones marked

A picture is written to docs/images/NAME.png; a block NAME (see doc_numbers.BLOCKS) replaces the text
between `<!-- generated: NAME ... -->` and `<!-- end generated: NAME -->` of the page that holds it.
Pictures and blocks that need the same runs share them within one call.

The two pictures of the MLflow UI (runs_table.png, filter_slider.png) are the browser test's
screenshots of the store that `make run` leaves:

    PIPELINE_BROWSER_STORE=. PIPELINE_SCREENSHOTS=/tmp/shots pytest -m browser tests/test_browser.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import doc_blocks
import doc_numbers as numbers
from pipeline.capacity import plots as capacity_plots
from pipeline.capacity import published
from pipeline.diagnose import plots as diagnose_plots
from pipeline.tracking import figures
from pipeline.train.loop import fit

OUT = Path(__file__).resolve().parent / "images"


def filters_forming(path: Path) -> None:
    """The 4-filter detector (seed 0): filters and linear weights at a few epochs."""
    cfg, bundle, model = numbers.detector(4)
    shots = {0: (model.conv.weight.detach().clone(), model.linear.weight.detach().clone())}
    wanted = {10, 50, 150, 500}

    def on_epoch(epoch, _):
        if epoch in wanted:
            shots[epoch] = (model.conv.weight.detach().clone(), model.linear.weight.detach().clone())

    history = fit(model, bundle, cfg, torch.device("cpu"), on_epoch=on_epoch, echo=numbers.quiet)
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
    """P(success) over the default grid (F = 1..8 x k = 3,5,7, 200 seeds)."""
    capacity_plots.heatmap_figure(numbers.grid().summary).savefig(path, dpi=80)


def minima(path: Path) -> None:
    """The default grid's diagnosis (k = 5, F = 1..8, 200 seeds): verdict shares against F beside a
    slice around a stuck seed and the paths from stuck seeds to solved ones."""
    fig = diagnose_plots.verdict_figure(numbers.diagnosis().by_config)
    fig.axes[0].set_title("k = 5, 200 seeds per F: where the seeds end (verdict by derivatives and line searches)",
                          fontsize=9)
    fig.set_size_inches(7.5, 4)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def pattern(path: Path) -> None:
    """The published task, F = 1..7 x 500 seeds, trained and frozen convolution, beside the published curve."""
    published.accuracy_figure(numbers.published_task().summary, 0.99).savefig(path, dpi=80)


FIGURES = {"filters_forming": filters_forming, "capacity_heatmap": capacity_heatmap, "minima": minima,
           "pattern": pattern}


def main(names: list[str]) -> int:
    """Make the named pictures and blocks (all of them without names); 2 on an unknown name."""
    if names == ["--list"]:
        for name in [*FIGURES, *numbers.BLOCKS]:
            print(f"{name}{'  (slow: ' + numbers.SLOW[name] + ')' if name in numbers.SLOW else ''}")
        return 0
    unknown = [n for n in names if n not in FIGURES and n not in numbers.BLOCKS]
    if unknown:
        print(f"Error: unknown name(s) {', '.join(unknown)}; `python docs/make_figures.py --list` lists them",
              file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    np.set_printoptions(precision=3)
    for name in names or [*FIGURES, *numbers.BLOCKS]:
        if name in FIGURES:
            FIGURES[name](OUT / f"{name}.png")
            print(f"wrote {OUT / name}.png")
        else:
            try:
                print(f"wrote {name} into {doc_blocks.write(name, numbers.BLOCKS[name]())}")
            except FileNotFoundError as e:  # the MNIST block without MNIST's files
                print(f"skipped {name}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
