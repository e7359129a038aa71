"""The MLflow side of a trial: one child run per trial, and closing a dead worker's runs."""
from __future__ import annotations

import sys
from typing import Any

from pipeline.config.studies import SweepConfig
from pipeline.sweep.space import layer_values, model_name
from pipeline.tracking import faults, runs, sweeps
from pipeline.tracking.metrics import MetricBuffer
from pipeline.tracking.experiments import shape_label


class TrialRun:
    """The MLflow child run of one trial (``trial 7 F3 k5``), written through the client (one call per batch).
    Made and ended inside ``errors.guarded`` (``TrialObjective``): a signal then is held, not left a RUNNING run."""

    def __init__(self, client: Any, experiment_id: str, parent_id: str, trial: Any, cfg: SweepConfig,
                 point: dict[str, Any], repeat_of: Any = None):
        self.client = client
        self.cfg = cfg
        self.number = trial.number
        self.repeat_of = repeat_of
        filters, kernels = layer_values(point, cfg)
        self.label = shape_label(filters, kernels) + (f" lr {point['lr']:.3g}" if "lr" in point else "")
        tags = {
            "stage": "sweep-trial",
            "study_name": cfg.study_name,
            "trial_number": str(trial.number),
            "objective": cfg.objective,
            "recipe": cfg.recipe,
            "dataset": cfg.dataset or "synthetic",
            "model": model_name(cfg),
            "seed": str(cfg.sampler_seed),
            "filters": ",".join(map(str, filters)),
            "kernel_size": ",".join(map(str, kernels)),
        }
        if repeat_of is not None:
            tags["repeat_of_trial"] = str(repeat_of.number)
        commit = runs.git_commit()
        if commit:
            tags["git_commit"] = commit
        self.run_id = sweeps.create_child_run(client, experiment_id, parent_id, f"trial {trial.number} {self.label}",
                                              tags, system_metrics=not cfg.no_system_metrics)
        try:
            trial.set_user_attr("mlflow_run_id", self.run_id)
            trial.set_user_attr("mlflow_parent_run_id", parent_id)
        except BaseException as err:  # the storage failed or a signal came: the run must not stay RUNNING
            sweeps.fail_run(client, self.run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        self.metrics = MetricBuffer(self.run_id, flush_every=5.0)

    def log_params(self, params: dict[str, Any]) -> None:
        sweeps.log_params(self.client, self.run_id, params)

    def finish(self, status: str, final: dict[str, float] | None = None, outcome: str = "") -> None:
        """End the run as ``status``, with its final values and a description of how the trial went."""
        if faults.lost():  # the tracking store is gone: the stage saves what it can and stops
            return
        if final:
            self.metrics.log(final, step=0)
        self.metrics.flush()
        what = f"Trial {self.number} of the Optuna study `{self.cfg.study_name}`: {objective_text(self.cfg)}, " \
               f"{self.label}."
        if self.repeat_of is not None:
            outcome += f" Same configuration as trial {self.repeat_of.number}: not trained again, its result reused."
        sweeps.end_run(self.client, self.run_id, status, f"{what}\n\n{outcome.strip()}")


def objective_text(cfg: SweepConfig) -> str:
    """What a trial measures, in words."""
    seeds = len(cfg.trial_seeds)
    if cfg.objective == "success":
        return f"P(success) of the 1D detector over {seeds} seeds ({cfg.epochs} epochs each)"
    mean = f", the mean of {seeds} seeds" if seeds > 1 else ""
    return f"validation accuracy of {model_name(cfg)} on {cfg.dataset} after {cfg.epochs} epochs{mean}"


def close_stale_runs(tracking_uri: str, frozen_trial: Any) -> None:
    """A dead worker's trial: end its MLflow child (and that worker's parent) as KILLED.

    Best effort: the trial is re-queued whatever happens here. A run that cannot be ended stays
    RUNNING, and one line on stderr says which and how to end it by hand."""
    reason = f"worker heartbeat lost (trial {frozen_trial.number})"
    for key in ("mlflow_run_id", "mlflow_parent_run_id"):
        run_id = frozen_trial.user_attrs.get(key)
        if not run_id:
            continue
        try:
            sweeps.kill_if_running(tracking_uri, run_id, reason)
        except Exception as err:  # noqa: BLE001 - never let MLflow bookkeeping stop the retry
            print(f"sweep: run {run_id} of dead trial {frozen_trial.number} was not ended KILLED "
                  f"({faults.reason(err)}); end it with: {sweeps.kill_command(tracking_uri, run_id)}", file=sys.stderr)
