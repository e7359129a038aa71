"""Stage `capacity` on images: test accuracy over filter counts x kernel sizes, many seeds each.

Run as ``pipeline capacity --dataset digits --filters 1,2,4,8 --kernel-sizes 3,5 --seeds 16``
(any data, recipe and model option of `pipeline train`: ``--recipe mnist-small``, ``--model
lenet``, ``--data-dir``, ``--batch-norm``, ...). Reads the data set like `pipeline train`;
trains every cell (F, k) from seeds first_seed ... first_seed+S-1 at once, each seed on the
minibatches of `pipeline train --seed s`, and scores it on the test split. Writes a parent
run with the per-seed table (``capacity_table.csv``), ``tables/summary.csv`` (per cell: mean,
std, 95% interval, min, max, parameter count, bad-run share), ``tables/curves.csv`` (per
seed and epoch) and ``tables/curves_summary.csv``, and the figures (heatmap, capacity curve,
learning curves, per-seed spread); one child run per cell with its statistics and its mean
curves (step = epoch). ``--table PATH`` also writes the per-seed table to a local CSV file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.capacity import study
from pipeline.capacity.images import strategy
from pipeline.capacity.images.grid import Cell, cells, run_cell
from pipeline.capacity.images.stats import bad_runs, curve_summary, report, summarize
from pipeline.config.image_study import train_config
from pipeline.capacity.story import grid_label
from pipeline.config.studies import CapacityConfig
from pipeline.errors import Interrupted
from pipeline.tracking import checkpoints, provenance, runs, studies
from pipeline.tracking.checkpoints import Checkpoint
from pipeline.tracking.rescue import Keep
from pipeline.train.batching import pick_device
from pipeline.train.progress import Progress

SUMMARY_METRICS = ("test_accuracy_mean", "test_accuracy_std", "test_accuracy_lo", "test_accuracy_hi",
                   "test_accuracy_min", "test_accuracy_max", "bad_run_share", "num_parameters", "n")


@dataclass(frozen=True)
class ImageCapacityResult:
    run_id: str
    table: pd.DataFrame  # one row per (F, k, seed)
    summary: pd.DataFrame  # one row per (F, k)
    curves: pd.DataFrame  # one row per (F, k, seed, epoch)
    seconds: float  # training time of the whole grid


def run(cfg: CapacityConfig, echo: Callable[[str], None] = print) -> ImageCapacityResult:
    """Train the grid on the images, log one child run per cell and the tables and figures on the parent
    (with ``--resume``: continue a stopped parent run from its checkpoint, its finished cells kept)."""
    from pipeline.data.io import log_bundle_input
    from pipeline.train.stage import check_model, load_data

    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    start = None
    if cfg.resume:
        _, start = checkpoints.load(cfg.resume, "capacity")
        cfg = checkpoints.resumed_config(start, cfg)
    base, bundle = load_data(train_config(cfg))
    grid = cells(cfg, base, bundle)
    for cell in grid:  # every cell's seeds train at once: they must fit together, checked before any training
        check_model(cell.config, bundle, copies=cfg.seeds)
    seeds = study.seeds_of(cfg)
    device = pick_device(cfg.device)
    tags = {"recipe": base.recipe, "dataset": bundle.name, "model": base.model, "seed": f"{seeds[0]}-{seeds[-1]}"}
    tables: list = []  # per cell: saved locally if the tracking store goes away
    latest: dict = {"stage": "capacity", "config": checkpoints.kept_config(cfg),
                    "cells": list((start or {}).get("cells", []))}  # the checkpoint: finished cells' results
    keep = Keep(config=cfg, seeds=tables, checkpoint=lambda: Checkpoint(latest))
    with study.torch_threads(cfg.threads), studies.study_run(
            "capacity", cfg, f"capacity {bundle.name} {grid_label(cfg.filters, cfg.kernel_sizes)}",
            {**tags, "study": "image-capacity", "device": str(device)}, keep,
            run_id=start and start["run_id"]) as run_id:
        if start is None:
            studies.log_dict(provenance.config_dict(base), "train_config.json")  # passwords hidden
            log_bundle_input(bundle, context="training")
        latest["run_id"] = run_id
        curves, seconds = _train_grid(cfg, grid, bundle, seeds, device, tags, tables, latest)
        table = pd.concat(tables, ignore_index=True)
        table["bad_run"] = bad_runs(table, cfg.margin)
        summary = summarize(table, cfg.margin)
        curves_all = pd.concat(curves, ignore_index=True)
        _log_parent(table, summary, curves_all, cfg, seconds, base.epochs)
        study.write_table(table, cfg.table)
    study.finish(report(summary, cfg.margin, seconds, len(table) * base.epochs), cfg.table, f"parent run {run_id}",
                 echo)
    return ImageCapacityResult(run_id, table, summary, curves_all, seconds)


def _train_grid(cfg: CapacityConfig, grid: list[Cell], bundle, seeds: list[int], device, tags: dict,
                tables: list, latest: dict) -> tuple[list[pd.DataFrame], float]:
    """Train and log every cell not in the checkpoint ``latest`` yet, appending its per-seed table to ``tables``,
    and checkpoint after each; (per-cell curves, training seconds). A signal stops the cell in progress: the
    resumed run trains it again, from its seeds, to the same bits."""
    curves, seconds = [], 0.0
    strategy.remember(latest.get("plans", {}))  # the cell that was stopped runs as it began: same numbers
    checkpoints.log(latest, latest["run_id"])
    try:
        with Progress(len(grid), "capacity", "cell") as bar:
            for i, cell in enumerate(grid):
                bar.describe(f"F={cell.filters} k={cell.kernel_size}")
                if i < len(latest["cells"]):  # finished before the run was stopped: logged already
                    part, curve, secs = latest["cells"][i]
                else:
                    part, curve, result = run_cell(cell, bundle, seeds, device, strategy=cfg.strategy)
                    studies.set_tag(f"strategy F{cell.filters} k{cell.kernel_size}", result.strategy)  # on the parent
                    secs = result.seconds
                    _log_child(cell, part, curve, cfg, tags, secs)
                    latest["cells"].append((part, curve, secs))
                    checkpoints.log(latest, latest["run_id"])
                seconds += secs
                tables.append(part)
                curves.append(curve)
                bar.update()
    except Interrupted as err:
        latest["plans"] = strategy.chosen()  # how the stopped cell ran (auto's pick is timed, so it may vary)
        checkpoints.log(latest, latest["run_id"])
        err.resume_hint = checkpoints.resume_command("capacity", latest["run_id"])
        raise
    return curves, seconds


def _log_child(cell: Cell, part: pd.DataFrame, curves: pd.DataFrame, cfg: CapacityConfig, tags: dict,
               seconds: float) -> None:
    """One child run per cell: its statistics, and its mean curves over seeds (step = epoch)."""
    row = summarize(part, cfg.margin).iloc[0]
    params = study.child_params(cfg, ("filters", "kernel_sizes"), filters=cell.filters,
                                kernel_size=cell.kernel_size, layer_filters=row.layer_filters)
    metrics = {**{m: row[m] for m in SUMMARY_METRICS if pd.notna(row[m])}, "train_seconds": seconds,
               "ms_per_seed_epoch": 1000 * seconds / len(curves)}
    steps = ((int(epoch), {"train_loss_mean": at["train_loss"].mean(), "val_accuracy_mean": at["val_accuracy"].mean(),
                           "val_accuracy_std": at["val_accuracy"].std(ddof=0)})
             for epoch, at in curves.groupby("epoch"))
    studies.log_child("capacity", f"capacity F{cell.filters} k{cell.kernel_size}",
                      {**tags, "filters": cell.filters, "kernel_size": cell.kernel_size}, metrics, params,
                      curves=steps)


def _log_parent(table, summary, curves, cfg: CapacityConfig, seconds: float, epochs: int) -> None:
    from pipeline.capacity.images.plots import (
        capacity_curve_figure,
        heatmap_figure,
        learning_curves_figure,
        spread_figure,
    )

    bands = curve_summary(curves)
    best = summary.loc[summary["test_accuracy_mean"].idxmax()]
    spread = summary["test_accuracy_std"].mean()  # NaN with one seed a cell: not logged, as the children's
    studies.log_results(
        {"capacity_table.csv": table, "tables/summary.csv": summary, "tables/curves.csv": curves,
         "tables/curves_summary.csv": bands},
        {"figures/accuracy_heatmap.png": lambda: heatmap_figure(summary),
         "figures/accuracy_vs_parameters.png": lambda: capacity_curve_figure(table, summary),
         "figures/learning_curves.png": lambda: learning_curves_figure(bands),
         "figures/seed_spread.png": lambda: spread_figure(table, cfg.margin)},
        {"trainings": len(table), "train_seconds": seconds, "ms_per_seed_epoch": 1000 * seconds / (len(table) * epochs),
         "best_test_accuracy_mean": float(best.test_accuracy_mean),
         "bad_run_share_overall": float(table["bad_run"].mean()),
         **({} if np.isnan(spread) else {"test_accuracy_std_mean": float(spread)})})
