"""Stage `capacity`: how often does the detector succeed (loss < τ, every row right), against F and k?

Run as ``pipeline capacity [--filters 1-8] [--kernel-sizes 3,5,7] [--seeds 200]`` or
``mlflow run . -e capacity``. Every configuration (F, k) of the grid is trained from
``--seeds`` initialisation seeds on the same synthetic data, all seeds at once
(``multiseed.py``). Writes one parent run (``capacity F1–8 × k3,5,7``) whose description says
the result in words (``story.py``), with ``p_success_F<f>_k<k>`` metrics, the figures
(P(success) heatmap, P(success) against F with interval bands and the lottery fit, the
histogram of final losses) and the tables (``tables/seeds.csv``, one row per seed;
``tables/summary.csv``; ``tables/lottery_fit.csv``), and one child run per configuration
(``capacity F4 k5``) with its P(success) and Wilson interval. ``--table PATH`` also writes the
per-seed table to a local CSV file.

On image data (``--dataset digits``, an image ``--recipe``) the same grid runs on a 2D net,
scored by test accuracy: ``images/stage.py``.

A seed succeeds when its final training loss is below tau and its training accuracy is
100%. ``outcomes.seed_table`` and ``stats.p_success`` are the one way to compute outcomes
and rates: the sweep calls them too, so both report the same P(success) for the same seeds.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from pipeline.capacity import study
from pipeline.capacity.ahead import GridAhead
from pipeline.capacity.outcomes import Settings, check_memory, seed_table
from pipeline.capacity.stats import load_fit, lottery_fit, summarize
from pipeline.capacity.story import description, generalisation_text, grid_label, summary_metrics
from pipeline.config.image_study import is_image_study
from pipeline.config.studies import CapacityConfig
from pipeline.tracking import provenance, runs, studies
from pipeline.tracking.rescue import Keep

if TYPE_CHECKING:
    from pipeline.capacity.images.stage import ImageCapacityResult
    from pipeline.tracking.drawing import Drawing

@dataclass(frozen=True)
class CapacityResult:
    run_id: str
    table: pd.DataFrame  # one row per (F, k, seed)
    summary: pd.DataFrame  # one row per (F, k)
    lottery: pd.DataFrame  # one row per (k, F)
    seconds: float  # training time of the whole grid


def run(cfg: CapacityConfig, echo: Callable[[str], None] = print,
        load_tracking: Callable[[], None] = lambda: None) -> CapacityResult | ImageCapacityResult:
    """Train the grid, log one child run per configuration and the figures and tables on the parent.

    ``load_tracking`` loads the tracking libraries (the CLI's: mlflow with the collector paused; by default they
    load when first used): the 1D grid calls it once its training has started, so that the two overlap."""
    if is_image_study(cfg):
        from pipeline.capacity.images import stage as images

        load_tracking()
        return images.run(cfg, echo)
    settings = Settings.from_config(cfg)
    check_memory(max(cfg.filters), max(cfg.kernel_sizes), cfg.seeds, settings)
    seeds = study.seeds_of(cfg)
    grid = [(f, k) for k in cfg.kernel_sizes for f in cfg.filters]
    threads = study.thread_count(cfg.threads)
    with _torch_threads(cfg.threads, settings.device), \
            GridAhead(grid, lambda f, k: seed_table(f, k, seeds, settings, threads=threads),
                      _warm_trainer(settings)) as ahead:
        load_tracking()
        return _run(cfg, seeds, settings, ahead, echo)


def _torch_threads(threads: int, device: str) -> contextlib.AbstractContextManager:
    """``--threads`` for torch where torch trains (off the CPU); on the CPU the compiled trainer gets them and
    torch is not loaded."""
    return contextlib.nullcontext() if device == "cpu" else study.torch_threads(threads)


def _run(cfg: CapacityConfig, seeds: list[int], settings: Settings, ahead: GridAhead,
         echo: Callable[[str], None]) -> CapacityResult:
    """The tracking side, while ``ahead`` trains the grid: the parent run, a child per configuration, the results."""
    from pipeline.capacity.outcomes import datasets
    from pipeline.tracking.artifacts import log_dataset
    from pipeline.tracking.drawing import Drawing

    drawing = Drawing()  # its helper process loads matplotlib on the other core while the grid trains,
    drawing.preload("pipeline.capacity.plots")  # and the figures' own imports (pandas)
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    tags = {"task": "detector", "recipe": "synthetic", "dataset": "synthetic", "model": "detector1d",
            "seed": f"{seeds[0]}-{seeds[-1]}"}
    grid_text = grid_label(cfg.filters, cfg.kernel_sizes)
    tables: list[pd.DataFrame] = []  # per (F, k): saved locally if the tracking store goes away
    results: dict[str, pd.DataFrame] = {}

    def all_trained(trained: list[pd.DataFrame]) -> None:  # the figures drawn while the last children are logged
        table = pd.concat(trained, ignore_index=True)
        results.update(table=table, summary=summarize(table, cfg.tau))
        results["lottery"] = lottery_fit(results["summary"])
        _draw(drawing, results["table"], results["summary"], results["lottery"], cfg.tau)

    with studies.study_run(
            "capacity", cfg, f"capacity {grid_text}", {**tags, "grid": grid_text}, Keep(config=cfg, seeds=tables),
            what=f"Trains every configuration of {grid_text} from {cfg.seeds} seeds at once and "
                 "estimates P(success) with 95% Wilson intervals.") as run_id, drawing:
        X, y = datasets(cfg.n, cfg.width, cfg.data_seed, cfg.test_n, cfg.test_seed)[:2]
        log_dataset(X, y, "synthetic", "training")  # as `train` logs its data (data.io), without torch
        studies.set_tag("trainer", trainer_label(settings.device, cfg.threads))
        seconds = _log_grid(ahead, cfg, tables, tags, all_trained)
        table, summary, lottery = results["table"], results["summary"], results["lottery"]
        _log_parent(table, summary, lottery, cfg, seconds)
        provenance.describe(description(summary, lottery, cfg.tau))
        study.write_table(table, cfg.table)
    study.finish(report(summary, lottery, cfg.tau, seconds, len(table)), cfg.table, f"parent run {run_id}", echo)
    return CapacityResult(run_id, table, summary, lottery, seconds)


def trainer_label(device: str, threads: int) -> str:
    """What trains the grid, as the parent run's ``trainer`` tag says: 'fused (compiled, 2 threads)' or 'torch'."""
    from pipeline.capacity.multiseed import engine_of

    engine = engine_of(device)
    threads = study.thread_count(threads)
    return f"fused (compiled, {threads} thread{'s' if threads > 1 else ''})" if engine == "fused" else engine


def _warm_trainer(settings: Settings) -> Callable[[], None] | None:
    """On the CPU, loading the compiled trainer (about 0.5 s: numba and its cached machine code), which the
    training thread does first; None where the grid trains with torch."""
    if settings.device != "cpu":
        return None

    def warm() -> None:
        from pipeline.capacity import fused  # numba's import too, off the stage's thread

        fused.warm()

    return warm


def _log_grid(ahead: GridAhead, cfg: CapacityConfig, tables: list[pd.DataFrame], tags: dict,
              all_trained: Callable[[list[pd.DataFrame]], None]) -> float:
    """Log each configuration's child run as ``ahead`` finishes training it (a grid stopped midway keeps the children
    it logged), its per-seed table appended to ``tables`` (which a lost store's rescue saves) as soon as it comes;
    ``all_trained`` gets every table once the last one is trained, before the children still to log. The
    training seconds."""
    from tqdm import tqdm

    load_fit()  # while the first configurations train
    seconds = 0.0
    with tqdm(total=len(ahead.grid), desc="capacity", unit="config", file=sys.stderr, leave=False,
              disable=None) as bar:
        for batch in ahead.batches():
            tables += [table for _, _, table, _ in batch]  # kept by the rescue as soon as they are trained
            if len(tables) == len(ahead.grid):
                all_trained(tables)
            for f, k, table, cell in batch:
                bar.set_postfix_str(f"F={f} k={k}")
                seconds += cell
                _log_child(summarize(table, cfg.tau).iloc[0], f, k, cfg, tags, cell)
                bar.update()
    return seconds


def _log_child(row: pd.Series, f: int, k: int, cfg: CapacityConfig, tags: dict, seconds: float) -> None:
    """One child run: its metrics and params in one batch, its description in words."""
    n = int(row.n)
    metrics = {"p_success": row.p_success, "p_success_lo": row.p_success_lo, "p_success_hi": row.p_success_hi,
               "successes": row.successes, "n_seeds": row.n, "median_final_loss": row.median_final_loss,
               "train_seconds": seconds, "ms_per_training": 1000 * seconds / n}
    metrics.update({c: row[c] for c in row.index if c.startswith("p_success_tau_")})
    for c in ("test_accuracy_success", "test_accuracy_failed", "unseen_accuracy_success", "unseen_accuracy_failed"):
        if not np.isnan(row[c]):
            metrics[c] = row[c]
    params = study.child_params(cfg, ("filters", "kernel_sizes"), filters=f, kernel_size=k)
    studies.log_child("capacity", f"capacity F{f} k{k}", {**tags, "filters": f, "kernel_size": k}, metrics, params,
                      description=(f"Trains the 1D detector with {f} filters of width {k} from {n} seeds "
                                   "at once.",
                                   f"P(success) = {row.p_success:.3f} [{row.p_success_lo:.3f}, "
                                   f"{row.p_success_hi:.3f}]: {int(row.successes)} of {n} seeds reached "
                                   f"loss < {cfg.tau:g}; median final loss {row.median_final_loss:.3f}."))


def _draw(drawing: Drawing, table: pd.DataFrame, summary: pd.DataFrame, lottery: pd.DataFrame, tau: float) -> None:
    """The parent's three figures, handed to the drawing helper (logged when the study's block ends)."""
    plots = "pipeline.capacity.plots"
    drawing.figure("figures/p_success_heatmap.png", f"{plots}:heatmap_figure", summary)
    drawing.figure("figures/p_success_vs_filters.png", f"{plots}:curves_figure", summary, lottery)
    drawing.figure("figures/final_loss_histogram.png", f"{plots}:histogram_figure", table, tau)


def _log_parent(table, summary, lottery, cfg: CapacityConfig, seconds: float) -> None:
    metrics = {"trainings": len(table), "train_seconds": seconds, "ms_per_training": 1000 * seconds / len(table),
               "p_success_overall": float(table["success"].mean()), **summary_metrics(summary)}
    for k, part in lottery.groupby("kernel_size"):
        metrics[f"lottery_p_k{k}"] = part["p_k"].iloc[0]
        if not part["untestable"].iloc[0]:  # no test statistic where the data cannot test the model
            metrics[f"lottery_chi2_k{k}"] = part["chi2"].iloc[0]
            metrics[f"lottery_p_value_k{k}"] = part["p_value"].iloc[0]
        metrics[f"lottery_max_abs_deviation_k{k}"] = float(part["deviation"].abs().max())
    studies.log_results(
        {"tables/seeds.csv": table, "tables/summary.csv": summary, "tables/lottery_fit.csv": lottery}, {}, metrics)


def report(summary: pd.DataFrame, lottery: pd.DataFrame, tau: float, seconds: float, trainings: int) -> list[str]:
    """The console summary: the P(success) table, tau sensitivity, generalisation, the lottery fit."""
    lines = [f"{trainings} trainings in {seconds:.1f} s ({1000 * seconds / trainings:.2f} ms each)", "",
             f"P(success) (loss < {tau:g} and 100% train accuracy) [95% Wilson interval], "
             f"n = {int(summary['n'].iloc[0])} seeds each:"]
    ks = sorted(summary["kernel_size"].unique())
    grid = summary.set_index(["filters", "kernel_size"])
    lines.append("   F  " + "".join(f"{'k = ' + str(k):>22s}" for k in ks))
    for f in sorted(summary["filters"].unique()):
        cells = [grid.loc[(f, k)] for k in ks]
        lines.append(f"{f:4d}  " + "".join(f"{c.p_success:9.3f} [{c.p_success_lo:.3f},{c.p_success_hi:.3f}]"
                                           for c in cells))
    other = [c for c in summary.columns if c.startswith("p_success_tau_")]
    if other:
        shifts = ", ".join(f"tau = {c.removeprefix('p_success_tau_')}: {(summary[c] - summary['p_success']).abs().max():.3f}"
                           for c in other)
        lines += ["", f"tau sensitivity, largest change of any P(success) from tau = {tau:g}: {shifts}"]
    lines.append(generalisation_text(summary))
    lines += ["", "independent-lottery fit P(F) = 1 - (1 - p_k)^F:"]
    for k, part in lottery.groupby("kernel_size"):
        if part["untestable"].iloc[0]:
            lines.append(f"  k = {k}: {part['untestable'].iloc[0]}, so the data cannot test the model "
                         f"(p_k = {part['p_k'].iloc[0]:.3f})")
            continue
        lines.append(f"  k = {k}: p_k = {part['p_k'].iloc[0]:.3f}, chi2 = {part['chi2'].iloc[0]:.1f} on "
                     f"{part['dof'].iloc[0]} dof (p = {part['p_value'].iloc[0]:.3g}), max |observed - fit| = "
                     f"{part['deviation'].abs().max():.3f}, {int(part['inside_interval'].sum())}/{len(part)} "
                     "predictions inside the intervals")
    return lines
