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
import torch

from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.diagnose import plots, source as sources, summaries
from pipeline.diagnose.measure import measure, replay_check
from pipeline.diagnose.verdicts import VERDICTS, Tolerances, classify, sensitivity, shares
from pipeline.tracking import artifacts, provenance, runs
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
    from tqdm import tqdm

    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    src = sources.read(cfg.capacity_run, cfg.filters, cfg.kernel_sizes, cfg.seeds)
    tol = Tolerances(cfg.delta, cfg.radius, cfg.last_epochs)
    tags = {"task": sources.TASK, "recipe": "synthetic", "dataset": "synthetic", "model": "detector1d",
            "seed": f"{src.seeds[0]}-{src.seeds[-1]}", "capacity_run": src.run_id}
    old_threads = torch.get_num_threads()
    if cfg.threads:  # 0: torch's default
        torch.set_num_threads(cfg.threads)
    try:
        keep = Keep(config=cfg)  # and the tables, once computed: saved locally if the tracking store goes away
        with runs.stage_run("diagnose", run_name=f"diagnose {src.run_id[:8]}", tags=tags, keep=keep) as active:
            provenance.log_config(cfg)
            t0 = time.perf_counter()
            grid = [(f, k) for k in src.kernel_sizes for f in src.filters]
            bar = tqdm(grid, desc="diagnose", unit="config", file=sys.stderr, leave=False)
            measured = [measure(f, k, src, cfg.last_epochs, cfg.radius, cfg.long_factor) for f, k in bar]
            bar.close()
            table = pd.concat([m.table for m in measured], ignore_index=True)
            grad_drops = np.concatenate([m.grad_drops for m in measured])
            curv_drops = np.concatenate([m.curv_drops for m in measured])
            epochs = src.settings.epochs
            table["verdict"] = classify(table, grad_drops, curv_drops, tol, epochs)
            filters = pd.concat([m.filters for m in measured], ignore_index=True)
            by_config = shares(table["verdict"], table[["filters", "kernel_size"]]).reset_index()
            sens = sensitivity(table, grad_drops, curv_drops, tol, epochs)
            classes = summaries.class_shares(filters)
            tickets = summaries.ticket_fits(table)
            paths, curves, slices = summaries.landscape_pieces(measured, table, cfg.pairs, cfg.slice_points)
            seconds = time.perf_counter() - t0
            diff = replay_check(table, src.table)
            keep.update(diagnosis=table, filters=filters, verdict_shares=by_config, sensitivity=sens,
                        filter_classes=classes, tickets=tickets, paths=paths)
            if cfg.table:  # before the logging, which a lost store would stop
                table.to_csv(cfg.table, index=False)
            _log(table, filters, by_config, sens, classes, tickets, paths, curves, slices, seconds, diff)
            run_id = active.info.run_id
    finally:
        torch.set_num_threads(old_threads)
    for line in summaries.report(table, by_config, sens, classes, tickets, paths, tol, seconds, diff,
                                 cfg.long_factor):
        echo(line)
    if cfg.table:
        echo(f"per-seed table written to {cfg.table}")
    echo(f"diagnose run {run_id}")
    return DiagnoseResult(run_id, table, filters, by_config, sens, classes, tickets, paths, seconds)


def _log(table, filters, by_config, sens, classes, tickets, paths, curves, slices, seconds, diff) -> None:
    import mlflow

    artifacts.log_table(table, "diagnosis.csv")
    for name, frame in (("filters", filters), ("verdict_shares", by_config), ("sensitivity", sens),
                        ("filter_classes", classes), ("tickets", tickets), ("paths", paths)):
        artifacts.log_table(frame, f"tables/{name}.csv")
    artifacts.log_figure(plots.verdict_figure(by_config), "figures/verdict_shares.png")
    artifacts.log_figure(plots.eigenvalue_figure(table), "figures/hessian_eigenvalues.png")
    artifacts.log_figure(plots.class_figure(classes), "figures/filter_classes.png")
    artifacts.log_figure(plots.ticket_figure(table, tickets), "figures/ticket_curve.png")
    if curves:
        points = [pd.DataFrame({"pair": i, "filters": c["filters"], "t": c["t"], "loss": c["loss"]})
                  for i, c in enumerate(curves)]
        artifacts.log_table(pd.concat(points), "tables/path_curves.csv")
        artifacts.log_figure(plots.path_figure(curves), "figures/paths.png")
    if slices:
        artifacts.log_figure(plots.slice_figure(slices), "figures/slice.png")
    failed = table[~table["success"]]
    metrics = {"seeds": len(table), "diagnose_seconds": seconds, "failed_seeds": len(failed),
               "long_run_escape_rate": float(failed["escaped"].mean()) if len(failed) else 0.0}
    if not np.isnan(diff):
        metrics["replay_max_abs_diff"] = diff
    overall = shares(table["verdict"]).iloc[0]
    metrics.update({f"share_{v.replace(' ', '_')}": float(overall[v]) for v in VERDICTS})
    if len(paths):
        metrics["median_barrier"] = float(paths["barrier"].median())
    mlflow.log_metrics(metrics)
