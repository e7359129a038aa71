"""Stage `capacity-pattern`: the capacity study on a second, published task, beside the published curve.

Run as ``pipeline capacity-pattern [--filters 1-7] [--seeds 500] [--variant both]`` or
``mlflow run . -e capacity_pattern``. Trains the rom1mouret/exploration detector
(``pattern.py``) from every seed at once, per F, with its convolution trained and frozen
(the published "Naive" and "RandomConv"), and scores each seed on the fixed test pairs.
Writes a parent run tagged ``stage=capacity``, ``task=pattern1101`` with the figures (mean
test accuracy against F beside the published numbers, P(accuracy >= success) over F x
variant, the histogram of test accuracies) and tables (``tables/seeds.csv``,
``tables/summary.csv``), and one child run per (F, variant).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.capacity import study
from pipeline.capacity.pattern import KERNEL, LENGTH, TASK, streams, test_pairs, train_pattern
from pipeline.capacity.published import PUBLISHED, accuracy_figure, histogram_figure, success_heatmap
from pipeline.capacity.stats import mean_interval, wilson
from pipeline.config.checks import fits_in_memory
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.tracking import runs, studies
from pipeline.tracking.rescue import Keep

@dataclass(frozen=True)
class PatternCapacityResult:
    run_id: str
    table: pd.DataFrame  # one row per (F, variant, seed)
    summary: pd.DataFrame  # one row per (F, variant)
    seconds: dict  # data streams, training (all seeds and variants), total


def parameters(filters: int, variant: str) -> int:
    """Trained parameters, the published figure's x axis: 4F + F + 1, or F + 1 with the conv frozen."""
    return (KERNEL * filters if variant == "trained" else 0) + filters + 1


def run(cfg: PatternCapacityConfig, echo: Callable[[str], None] = print) -> PatternCapacityResult:
    """Train every (F, variant) from all seeds, log a child run each and the figures and tables on the parent."""
    from pipeline.train.batching import pick_device

    fits_in_memory(4.0 * cfg.seeds * (2 * LENGTH * cfg.steps + 8 * max(cfg.filters)),  # streams and weights
                   f"{cfg.seeds} seeds of {cfg.steps} training pairs each", "use fewer --seeds or --steps")
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    seeds = study.seeds_of(cfg)
    tags = {"task": TASK, "recipe": "rom1mouret-exploration", "dataset": TASK, "model": "pattern-cnn",
            "seed": f"{seeds[0]}-{seeds[-1]}"}
    parts: list[pd.DataFrame] = []  # per (F, variant): saved locally if the tracking store goes away
    with study.torch_threads(cfg.threads), studies.study_run("capacity", cfg, "capacity pattern1101", tags,
                                                             Keep(config=cfg, seeds=parts)) as run_id:
        seconds = _train_grid(cfg, seeds, pick_device(cfg.device), tags, parts)
        table = pd.concat(parts, ignore_index=True)
        summary = summarize(table, cfg.success)
        _log_parent(table, summary, cfg, seconds)
        study.write_table(table, cfg.table)
    study.finish(report(summary, cfg.success, seconds, len(table)), cfg.table, f"parent run {run_id}", echo)
    return PatternCapacityResult(run_id, table, summary, seconds)


def _train_grid(cfg: PatternCapacityConfig, seeds: list[int], device, tags: dict, parts: list[pd.DataFrame]) -> dict:
    """Train and log every (F, variant), appending its per-seed table to ``parts``; the seconds spent."""
    variants = ["trained", "frozen"] if cfg.variant == "both" else [cfg.variant]
    seconds = {"streams": 0.0, "training": 0.0}
    X_test, y_test = test_pairs(cfg.test_pairs, cfg.test_seed)
    for f in cfg.filters:
        t0 = time.perf_counter()
        data = streams(f, seeds, cfg.steps)  # shared by both variants: the same init and pairs
        seconds["streams"] += time.perf_counter() - t0
        for variant in variants:
            t0 = time.perf_counter()
            r = train_pattern(f, seeds, X_test, y_test, lr=cfg.lr, momentum=cfg.momentum, steps=cfg.steps,
                              frozen=variant == "frozen", data=data, device=device)
            dt = time.perf_counter() - t0
            seconds["training"] += dt
            part = pd.DataFrame({"filters": f, "kernel_size": KERNEL, "variant": variant,
                                 "num_parameters": parameters(f, variant), "seed": seeds,
                                 "test_loss": r.test_loss, "last_pair_loss": r.last_loss.astype(float),
                                 "test_accuracy": r.test_accuracy})
            part["success"] = part["test_accuracy"] >= cfg.success
            parts.append(part)
            _log_child(part, cfg, tags, dt)
    seconds["total"] = seconds["streams"] + seconds["training"]
    return seconds


def summarize(table: pd.DataFrame, success: float) -> pd.DataFrame:
    """One row per (F, variant): mean test accuracy with its 95% interval, P(success) with Wilson's interval,
    the published mean."""
    rows = []
    groups = table.groupby(["filters", "variant"]).groups
    for f, variant in sorted(groups, key=lambda key: (list(PUBLISHED).index(key[1]), key[0])):
        part = table.loc[groups[(f, variant)]]
        mean, _, lo, hi = mean_interval(part["test_accuracy"])
        est = wilson(int(part["success"].sum()), len(part))
        published = PUBLISHED[variant][f - 1] / 100 if f <= len(PUBLISHED[variant]) else np.nan
        rows.append({"filters": f, "variant": variant, "num_parameters": int(part["num_parameters"].iloc[0]),
                     "n": est.n, "mean_accuracy": mean, "mean_accuracy_lo": float(np.clip(lo, 0.0, 1.0)),
                     "mean_accuracy_hi": float(np.clip(hi, 0.0, 1.0)), "successes": est.k, "p_success": est.p,
                     "p_success_lo": est.lo, "p_success_hi": est.hi, "published_mean_accuracy": published,
                     "difference": mean - published})
    return pd.DataFrame(rows)


def _log_child(part: pd.DataFrame, cfg: PatternCapacityConfig, tags: dict, seconds: float) -> None:
    """One child run per (F, variant): its accuracy, P(success) and the published mean, in one batch."""
    f, variant = int(part["filters"].iloc[0]), part["variant"].iloc[0]
    row = summarize(part, cfg.success).iloc[0]
    metrics = {name: float(row[name]) for name in ("mean_accuracy", "mean_accuracy_lo", "mean_accuracy_hi",
                                                   "p_success", "p_success_lo", "p_success_hi", "successes", "n")}
    metrics.update(train_seconds=seconds, ms_per_training=1000 * seconds / len(part))
    if not np.isnan(row["published_mean_accuracy"]):
        metrics["published_mean_accuracy"] = float(row["published_mean_accuracy"])
    params = study.child_params(cfg, ("filters", "variant", "table"), filters=f, variant=variant)
    studies.log_child("capacity", f"pattern F{f} {variant}", {**tags, "filters": f, "variant": variant}, metrics,
                      params)


def _log_parent(table: pd.DataFrame, summary: pd.DataFrame, cfg: PatternCapacityConfig, seconds: dict) -> None:
    metrics = {"trainings": len(table), "train_seconds": seconds["training"], "stream_seconds": seconds["streams"],
               "ms_per_training": 1000 * seconds["total"] / len(table)}
    for row in summary.itertuples():
        metrics[f"mean_accuracy_F{row.filters}_{row.variant}"] = row.mean_accuracy
        metrics[f"p_success_F{row.filters}_{row.variant}"] = row.p_success
    studies.log_results(
        {"tables/seeds.csv": table, "tables/summary.csv": summary},
        {"figures/accuracy_vs_filters.png": lambda: accuracy_figure(summary, cfg.success),
         "figures/p_success_heatmap.png": lambda: success_heatmap(summary, cfg.success),
         "figures/test_accuracy_histogram.png": lambda: histogram_figure(table, cfg.success)},
        metrics)


def report(summary: pd.DataFrame, success: float, seconds: dict, trainings: int) -> list[str]:
    """The console summary: per F and variant, our mean accuracy beside the published one, and P(success)."""
    lines = [f"{trainings} trainings in {seconds['total']:.1f} s (data streams {seconds['streams']:.1f} s, "
             f"training and scoring {seconds['training']:.1f} s)", "",
             f"mean test accuracy [95% interval] (published), share of seeds at >= {success:.0%} [Wilson]:"]
    for variant, part in summary.groupby("variant", sort=False):
        lines.append(f"  {variant} convolution:")
        for r in part.itertuples():
            pub = "" if np.isnan(r.published_mean_accuracy) else f" ({100 * r.published_mean_accuracy:.1f}%)"
            lines.append(f"    F = {r.filters}: {100 * r.mean_accuracy:5.1f}% [{100 * r.mean_accuracy_lo:.1f}, "
                         f"{100 * r.mean_accuracy_hi:.1f}]{pub:9s}  P = {r.p_success:.3f} "
                         f"[{r.p_success_lo:.3f}, {r.p_success_hi:.3f}], n = {r.n}")
    return lines
