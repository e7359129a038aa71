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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.config.recipes import resolve
from pipeline.config.studies import SweepConfig
from pipeline.errors import ConfigError, Interrupted, NonFiniteLoss, guarded
from pipeline.sweep.objectives import Objective, accuracy_objective, success_objective
from pipeline.sweep.repeats import earlier_trial, enqueue_untried, replay
from pipeline.sweep.report import (PLOT_MODULES, best_trials, describe_result, describe_sweep, format_summary,
                                   log_study_summary, state_counts)
from pipeline.sweep.settings import study_directions
from pipeline.sweep.space import grid_space, metric_names, model_name, param_names, suggest
from pipeline.sweep.storage import DEFAULT_STORAGE
from pipeline.sweep.study import check_resumable, open_study, retry_trial
from pipeline.sweep.trials import TrialRun
from pipeline.sweep.workers import worker_seed
from pipeline.tracking import provenance, runs, sweeps
from pipeline.tracking.connect import check_tracking_store
from pipeline.tracking.drawing import Drawing
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
    import torch

    cfg = resolve(cfg)
    check_objective(cfg)
    if cfg.threads:  # 0: torch's default
        torch.set_num_threads(cfg.threads)
    uri = runs.resolve_uri(cfg.tracking_uri)
    storage_url = cfg.storage or DEFAULT_STORAGE
    check_stores(uri, storage_url)  # both, before anything is written to either
    inner = (objective_factory or default_objective)(cfg)  # builds the data, checks sizes: before the study
    seed = worker_seed(cfg.sampler_seed, cfg.worker_index)
    study = open_study(cfg, uri, seed)
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    storage_text = redact(storage_url)
    with runs.stage_run("sweep", run_name=f"sweep {cfg.study_name}", tags=parent_tags(cfg, storage_text, seed),
                        keep=Keep(config=cfg)) as parent, Drawing() as drawing:
        drawing.preload(*PLOT_MODULES)  # on the other core while the trials train
        provenance.log_config(cfg)
        what = describe_sweep(cfg)
        provenance.describe(what)
        objective = TrialObjective(cfg, inner, sweeps.client(), parent.info.experiment_id, parent.info.run_id)
        elapsed = optimize(study, objective, cfg, storage_url)
        best, counts = report(study, cfg, what, elapsed, objective.client, drawing)
        run_id = parent.info.run_id
    echo(format_summary(cfg.study_name, storage_text, best, counts, study_directions(cfg)))
    return SweepResult(run_id, cfg.study_name, storage_text, best, counts, elapsed)


def default_objective(cfg: SweepConfig) -> Objective:
    return success_objective(cfg) if cfg.objective == "success" else accuracy_objective(cfg)


def parent_tags(cfg: SweepConfig, storage_text: str, seed: int) -> dict[str, Any]:
    return {"study_name": cfg.study_name, "storage": storage_text, "objective": cfg.objective,
            "sampler": cfg.sampler, "recipe": cfg.recipe, "seed": cfg.sampler_seed, "worker_sampler_seed": seed,
            "dataset": cfg.dataset or "synthetic", "model": model_name(cfg)}


class TrialObjective:
    """Optuna's objective for this worker: each trial is one MLflow child run, ended with the trial's
    real state and a description of how it went, whatever way the trial ends."""

    def __init__(self, cfg: SweepConfig, inner: Objective, client: Any, experiment_id: str, parent_id: str):
        self.cfg, self.inner, self.client = cfg, inner, client
        self.experiment_id, self.parent_id = experiment_id, parent_id
        self.names = metric_names(cfg)
        self.started = itertools.count(1)
        self.stopped: list[Any] = []  # the trials that a signal or a lost store interrupted: re-queued later
        self.held: list[int] = []  # a signal that came as a trial's run was made or ended: raised once it is told

    def __call__(self, trial: Any) -> Any:
        left = self.cfg.n_trials - next(self.started)  # trials that this worker runs after this one
        point = suggest(trial, self.cfg)
        earlier = earlier_trial(trial)
        run = None
        ending: tuple[str, dict[str, float], str] = ("FAILED", {}, "Failed.")
        with guarded(into=self.held) as guard:  # held while the run is made and ended: it had been left RUNNING
            try:
                run = TrialRun(self.client, self.experiment_id, self.parent_id, trial, self.cfg, point, earlier)
                with guard.released():
                    values = self.evaluate(trial, run, point, earlier, left)
                outcome = ", ".join(f"{n} = {v:.4g}" for n, v in zip(self.names, values)) + "."
                ending = ("FINISHED", {"objective_value": values[0]}, outcome)
                return values if self.cfg.multi_objective else values[0]
            except BaseException as err:  # noqa: BLE001 - re-raised: only the run's ending depends on it
                ending = self.interrupted(trial, err)
                raise
            finally:  # no run: none was made (or TrialRun ended the one it made)
                if run is not None and ending[0] == "FINISHED":
                    run.finish(*ending)
                elif run is not None:  # on the way out of a failure: bookkeeping must not hide it
                    runs.best_effort(run.finish, *ending)

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna's callback once a trial is told: a signal held as its run was made or ended stops the sweep now
        (raised in the objective, it had made a finished trial FAIL)."""
        if self.held:
            raise Interrupted(self.held.pop())

    def evaluate(self, trial: Any, run: TrialRun, point: dict[str, Any], earlier: Any, left: int) -> Any:
        """The trial's values: trained, or replayed from an earlier trial of the same configuration."""
        run.log_params(point)
        if earlier is None:
            return self.inner(trial, run, point)
        if self.cfg.lr_min is None and left:
            enqueue_untried(trial, grid_space(self.cfg))  # for this worker's next trial
        return replay(trial, earlier)

    def interrupted(self, trial: Any, err: BaseException) -> tuple[str, dict[str, float], str]:
        """How a trial that raised ``err`` ends: (run status, final values, outcome); a trial that a signal
        or a lost store stopped is kept for re-queueing."""
        import optuna

        if isinstance(err, optuna.TrialPruned):
            return "KILLED", {}, f"{str(err)[:1].upper()}{str(err)[1:]} (median pruner)."
        if isinstance(err, KeyboardInterrupt):
            self.stopped.append(trial)
            return "KILLED", {}, "Stopped by a signal; the trial is queued again."
        if not isinstance(err, Exception):
            return "FAILED", {}, "Failed."
        if is_store_fault(err):
            self.stopped.append(trial)
        return "FAILED", {}, f"Failed: {redact(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))}"


def optimize(study: Any, objective: TrialObjective, cfg: SweepConfig, storage_url: str) -> float:
    """This worker's trials; the seconds they took. The interrupted ones are re-queued, or a line on
    stderr says which could not be and how to re-queue it."""
    t0 = time.monotonic()
    try:  # a diverging trial (NaN loss) fails alone; the sweep goes on
        study.optimize(objective, n_trials=cfg.n_trials, timeout=cfg.timeout, catch=(NonFiniteLoss,),
                       callbacks=[objective.after_trial], show_progress_bar=cfg.progress and sys.stderr.isatty(),
                       gc_after_trial=False)
    finally:
        for trial in objective.stopped:
            line = retry_trial(study, trial, cfg.max_retry, storage_url)
            if line:
                print(line, file=sys.stderr)
    return time.monotonic() - t0


def report(study: Any, cfg: SweepConfig, what: str, elapsed: float, client: Any,
           drawing: Drawing) -> tuple[list, dict[str, int]]:
    """On the parent run: the best trial(s), counts, this worker's time, the table, the plots and the
    description; the best trials' runs are tagged. Returns (best trials, counts by state)."""
    best = best_trials(study)
    counts = state_counts(study)
    trained = len({tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
                   if t.state.is_finished() and "repeat_of" not in t.user_attrs})
    metrics = {"worker_seconds": elapsed, "configurations_trained": trained,
               **{f"trials_{k.lower()}": v for k, v in counts.items()}}
    log_study_summary(study, best, param_names(cfg)[0], cfg.objective, metrics, drawing)
    provenance.describe(what, describe_result(study, best, metric_names(cfg), trained))
    sweeps.tag_best(client, [b["mlflow_run_id"] for b in best if b["mlflow_run_id"]], cfg.study_name)
    return best, counts


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
