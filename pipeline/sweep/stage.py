"""Stage `sweep`: an Optuna study over filter counts and kernel sizes, tracked in MLflow.

Run as ``pipeline sweep --study-name NAME [--storage URL] --n-trials N`` (several workers
may run the same command at once) or ``mlflow run . -e sweep``. Writes one parent run per
invocation (``sweep <study>``, tagged with the study and the storage, password hidden)
whose description gives the best trial in words, holding the best trial(s), the trials
table and Optuna's plots, and one child run per trial (``trial 7 F3 k5``) with its params,
intermediate values (step = epoch), final values and its real state (pruned -> KILLED,
failed -> FAILED). A configuration that a finished trial of the study already tried is not
trained again (``repeats.py``).

Objectives: ``success`` trains S seeds of the 1D detector at once through the capacity
study's batched trainer and maximises P(success), reporting P(success) so far every
``--report-every`` epochs; ``accuracy`` trains one image model and maximises validation
accuracy, reporting every epoch. The study names its objectives (``p_success``,
``val_accuracy``), and a median pruner (Optuna's defaults) stops weak trials.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.config.recipes import resolve
from pipeline.config.studies import SweepConfig
from pipeline.errors import ConfigError, NonFiniteLoss
from pipeline.sweep.objectives import Objective, accuracy_objective, success_objective
from pipeline.sweep.repeats import earlier_trial, enqueue_untried, replay
from pipeline.sweep.report import (best_trials, describe_result, describe_sweep, format_summary, log_study_summary,
                                   state_counts)
from pipeline.sweep.settings import study_directions
from pipeline.sweep.space import grid_space, metric_names, model_name, param_names, suggest
from pipeline.sweep.storage import DEFAULT_STORAGE
from pipeline.sweep.study import check_resumable, open_study, retry_trial
from pipeline.sweep.trials import TrialRun
from pipeline.sweep.workers import worker_seed
from pipeline.tracking import provenance, runs
from pipeline.tracking.connect import check_tracking_store
from pipeline.tracking.faults import is_store_fault
from pipeline.tracking.redact import redact
from pipeline.tracking.rescue import Keep
from pipeline.tracking.stores import sqlite_file


@dataclass(frozen=True)
class SweepResult:
    run_id: str
    study_name: str
    storage: str  # redacted
    best: list[dict[str, Any]]  # best trial (or the Pareto front): number, params, values
    counts: dict[str, int]  # trials by state, whole study
    seconds: float  # this worker's time in study.optimize


def run(cfg: SweepConfig, echo: Callable[[str], None] = print,
        objective_factory: Callable[[SweepConfig], Objective] | None = None) -> SweepResult:
    """Run this worker's trials of the study; ``objective_factory`` replaces the objective (benchmarks)."""
    import mlflow
    import optuna
    import torch

    cfg = resolve(cfg)
    check_objective(cfg)
    if cfg.threads:  # 0: torch's default
        torch.set_num_threads(cfg.threads)
    uri = runs.resolve_uri(cfg.tracking_uri)
    check_stores(uri, cfg.storage or DEFAULT_STORAGE)  # both, before anything is written to either
    if objective_factory is not None:  # builds the data and checks the sizes: before the study is touched
        inner = objective_factory(cfg)
    else:
        inner = success_objective(cfg) if cfg.objective == "success" else accuracy_objective(cfg)
    seed = worker_seed(cfg.sampler_seed, cfg.worker_index)
    study = open_study(cfg, uri, seed)
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    storage_text = redact(cfg.storage or "sqlite:///optuna.db")
    tags = {"study_name": cfg.study_name, "storage": storage_text, "objective": cfg.objective,
            "sampler": cfg.sampler, "recipe": cfg.recipe, "seed": cfg.sampler_seed, "worker_sampler_seed": seed,
            "dataset": cfg.dataset or "synthetic", "model": model_name(cfg)}
    names = metric_names(cfg)
    with runs.stage_run("sweep", run_name=f"sweep {cfg.study_name}", tags=tags, keep=Keep(config=cfg)) as parent:
        provenance.log_config(cfg)
        what = describe_sweep(cfg)
        provenance.describe(what)
        client = mlflow.MlflowClient()
        experiment_id = parent.info.experiment_id
        started = itertools.count(1)
        stopped: list[Any] = []  # the trial that a signal or a lost store interrupted: retried later

        def objective(trial: Any) -> Any:
            this_worker_left = cfg.n_trials - next(started)  # trials that this worker runs after this one
            point = suggest(trial, cfg)
            earlier = earlier_trial(trial)
            status, final, outcome = "FAILED", {}, "Failed."
            run = None
            try:  # from the run's creation on: whatever happens, the run is ended
                run = TrialRun(client, experiment_id, parent.info.run_id, trial, cfg, point, repeat_of=earlier)
                run.log_params(point)
                if earlier is not None and cfg.lr_min is None and this_worker_left:
                    enqueue_untried(trial, grid_space(cfg))  # for this worker's next trial
                values = replay(trial, earlier) if earlier else inner(trial, run, point)
                final = {"objective_value": values[0]}
                status = "FINISHED"
                outcome = ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, values)) + "."
                return values if cfg.multi_objective else values[0]
            except optuna.TrialPruned as err:
                status = "KILLED"
                outcome = f"{str(err)[:1].upper()}{str(err)[1:]} (median pruner)."
                raise
            except KeyboardInterrupt:
                status, outcome = "KILLED", "Stopped by a signal; the trial is queued again."
                stopped.append(trial)
                raise
            except Exception as err:
                if is_store_fault(err):
                    stopped.append(trial)
                outcome = f"Failed: {redact(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))}"
                raise
            finally:
                if run is None:
                    pass  # no run was made (or TrialRun ended the one it made)
                elif status == "FINISHED":
                    run.finish(status, final, outcome)
                else:  # on the way out of a failure: bookkeeping must not hide it
                    runs.best_effort(run.finish, status, final, outcome)

        t0 = time.monotonic()
        try:  # a diverging trial (NaN loss) fails alone; the sweep goes on
            study.optimize(objective, n_trials=cfg.n_trials, timeout=cfg.timeout, catch=(NonFiniteLoss,),
                           show_progress_bar=cfg.progress, gc_after_trial=False)
        finally:
            for trial in stopped:
                retry_trial(study, trial, cfg.max_retry)
        elapsed = time.monotonic() - t0
        best = best_trials(study)
        counts = state_counts(study)
        trained = len({tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
                       if t.state.is_finished() and "repeat_of" not in t.user_attrs})
        mlflow.log_metrics({"worker_seconds": elapsed, "configurations_trained": trained,
                            **{f"trials_{k.lower()}": v for k, v in counts.items()}})
        log_study_summary(study, best, param_names(cfg)[0], cfg.objective)
        provenance.describe(what, describe_result(study, best, names, trained))
        for b in best:
            if b["mlflow_run_id"]:
                client.set_tag(b["mlflow_run_id"], "best_trial", "true")
        run_id = parent.info.run_id
    echo(format_summary(cfg.study_name, storage_text, best, counts, study_directions(cfg)))
    return SweepResult(run_id, cfg.study_name, storage_text, best, counts, elapsed)


def check_objective(cfg: SweepConfig) -> None:
    if cfg.objective == "success" and (cfg.dataset or "synthetic") != "synthetic":
        raise ConfigError("the success objective runs on the synthetic data; use --objective accuracy for images")


def preflight(cfg: SweepConfig) -> None:
    """What a sweep with ``cfg`` would refuse (objective, stores, a study with other settings or with its
    runs in another MLflow store), found without training and without writing: ``main`` asks first."""
    cfg = resolve(cfg)
    check_objective(cfg)
    uri = runs.resolve_uri(cfg.tracking_uri)
    check_stores(uri, cfg.storage or DEFAULT_STORAGE)
    check_resumable(cfg, uri)


def check_stores(tracking_uri: str, storage: str) -> None:
    """The tracking store and the Optuna storage, checked without writing: two databases, neither
    holding the other tool's tables."""
    check_tracking_store(tracking_uri)
    same = tracking_uri == storage
    if tracking_uri.startswith("sqlite") and storage.startswith("sqlite"):
        paths = [sqlite_file(u)[0] for u in (tracking_uri, storage)]
        same = same or (None not in paths and Path(paths[0]).resolve() == Path(paths[1]).resolve())
    if same:
        raise ConfigError(f"--storage and the tracking URI are one database ({redact(storage)}); MLflow and Optuna "
                          "each need their own")
