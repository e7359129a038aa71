"""Stage `diagnose`: is a stalled seed of a capacity run really at a local minimum?

Run as ``pipeline diagnose --capacity-run runs:/<id>`` or ``mlflow run . -e diagnose -P
capacity_run=<id>``. Reads a finished capacity run of the lab's detector (its config.json
and tables/seeds.csv); refuses any other run in one line. Replays every seed's training
(``replay.py``), measures it at its final weights (``measure.py``), decides a verdict per
seed (``verdicts.py``) and classes its filters (``anatomy.py``). Writes a run tagged
``stage=diagnose`` with ``diagnosis.csv`` (one row per seed; also ``--table PATH``),
``tables/`` (filters, verdict shares, tolerance sensitivity, filter classes, tickets,
paths) and ``figures/`` (verdict shares, eigenvalues, filter classes, ticket curve, paths,
slices).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.capacity import study
from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.diagnose import plots, source as sources, summaries
from pipeline.diagnose.measure import Measured, measure, replay_check
from pipeline.diagnose.verdicts import VERDICTS, Tolerances, classify, sensitivity, shares
from pipeline.tracking import runs, studies
from pipeline.tracking.rescue import Keep


@dataclass(frozen=True)
class DiagnoseResult:
    run_id: str
    table: pd.DataFrame  # diagnosis.csv: one row per seed
    filters: pd.DataFrame  # one row per (seed, filter)
    by_config: pd.DataFrame  # verdict shares per (F, k)
    sensitivity: pd.DataFrame  # verdict shares with each tolerance 10x smaller and larger
    classes: pd.DataFrame  # filter-class shares per (F, k, failed | solved)
    tickets: pd.DataFrame  # logistic fits of success on the initial alignment
    paths: pd.DataFrame  # barriers between (failed, solved) pairs
    seconds: float


def run(cfg: DiagnoseConfig, echo: Callable[[str], None] = print) -> DiagnoseResult:
    """Diagnose every seed of the capacity run; log the table, the summaries and the figures."""
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    src = sources.read(cfg.capacity_run, cfg.filters, cfg.kernel_sizes, cfg.seeds)
    tol = Tolerances(cfg.delta, cfg.radius, cfg.last_epochs)
    tags = {"task": sources.TASK, "recipe": "synthetic", "dataset": "synthetic", "model": "detector1d",
            "seed": f"{src.seeds[0]}-{src.seeds[-1]}", "capacity_run": src.run_id}
    keep = Keep(config=cfg)  # and the tables, once computed: saved locally if the tracking store goes away
    with study.torch_threads(cfg.threads), studies.study_run("diagnose", cfg, f"diagnose {src.run_id[:8]}", tags,
                                                             keep) as run_id:
        t0 = time.perf_counter()
        measured = _measure_grid(cfg, src)
        check = replay_check(pd.concat([m.table for m in measured], ignore_index=True), src)  # before any verdict
        result, curves, slices = _diagnose(run_id, measured, cfg, tol, src.settings.epochs, t0)
        keep.update(diagnosis=result.table, filters=result.filters, verdict_shares=result.by_config,
                    sensitivity=result.sensitivity, filter_classes=result.classes, tickets=result.tickets,
                    paths=result.paths)
        study.write_table(result.table, cfg.table)  # before the logging, which a lost store would stop
        _log(result, curves, slices, check.max_abs_diff)
    lines = summaries.report(result.table, result.by_config, result.sensitivity, result.classes, result.tickets,
                             result.paths, tol, result.seconds, check.line, cfg.long_factor)
    study.finish(lines, cfg.table, f"diagnose run {run_id}", echo)
    return result


def _measure_grid(cfg: DiagnoseConfig, src: sources.CapacitySource) -> list[Measured]:
    """Replay and measure every configuration of the source run, one at a time."""
    from tqdm import tqdm

    grid = [(f, k) for k in src.kernel_sizes for f in src.filters]
    with tqdm(grid, desc="diagnose", unit="config", file=sys.stderr, leave=False, disable=None) as bar:
        return [measure(f, k, src, cfg.last_epochs, cfg.radius, cfg.long_factor) for f, k in bar]


def _diagnose(run_id: str, measured: list[Measured], cfg: DiagnoseConfig, tol: Tolerances, epochs: int,
              t0: float) -> tuple[DiagnoseResult, list, list]:
    """Verdicts, filter classes, tickets and paths from the measurements, with the path curves and loss
    slices to draw (``t0``: when the replays began)."""
    table = pd.concat([m.table for m in measured], ignore_index=True)
    grad_drops = np.concatenate([m.grad_drops for m in measured])
    curv_drops = np.concatenate([m.curv_drops for m in measured])
    table["verdict"] = classify(table, grad_drops, curv_drops, tol, epochs)
    filters = pd.concat([m.filters for m in measured], ignore_index=True)
    by_config = shares(table["verdict"], table[["filters", "kernel_size"]]).reset_index()
    sens = sensitivity(table, grad_drops, curv_drops, tol, epochs)
    classes, tickets = summaries.class_shares(filters), summaries.ticket_fits(table)
    paths, curves, slices = summaries.landscape_pieces(measured, table, cfg.pairs, cfg.slice_points)
    result = DiagnoseResult(run_id, table, filters, by_config, sens, classes, tickets, paths,
                            time.perf_counter() - t0)
    return result, curves, slices


def _log(r: DiagnoseResult, curves: list, slices: list, replay_diff: float) -> None:
    """The diagnosis on its run: the per-seed table, the summary tables, the figures and the headline metrics."""
    tables = {"diagnosis.csv": r.table, "tables/filters.csv": r.filters, "tables/verdict_shares.csv": r.by_config,
              "tables/sensitivity.csv": r.sensitivity, "tables/filter_classes.csv": r.classes,
              "tables/tickets.csv": r.tickets, "tables/paths.csv": r.paths}
    figures = {"figures/verdict_shares.png": lambda: plots.verdict_figure(r.by_config),
               "figures/hessian_eigenvalues.png": lambda: plots.eigenvalue_figure(r.table),
               "figures/filter_classes.png": lambda: plots.class_figure(r.classes),
               "figures/ticket_curve.png": lambda: plots.ticket_figure(r.table, r.tickets)}
    if curves:
        tables["tables/path_curves.csv"] = pd.concat(
            [pd.DataFrame({"pair": i, "filters": c["filters"], "t": c["t"], "loss": c["loss"]})
             for i, c in enumerate(curves)])
        figures["figures/paths.png"] = lambda: plots.path_figure(curves)
    if slices:
        figures["figures/slice.png"] = lambda: plots.slice_figure(slices)
    failed = r.table[~r.table["success"]]
    metrics = {"seeds": len(r.table), "diagnose_seconds": r.seconds, "failed_seeds": len(failed),
               "long_run_escape_rate": float(failed["escaped"].mean()) if len(failed) else 0.0}
    if not np.isnan(replay_diff):
        metrics["replay_max_abs_diff"] = replay_diff
    overall = shares(r.table["verdict"]).iloc[0]
    metrics.update({f"share_{v.replace(' ', '_')}": float(overall[v]) for v in VERDICTS})
    if len(r.paths):
        metrics["median_barrier"] = float(r.paths["barrier"].median())
    studies.log_results(tables, figures, metrics)
