"""The MLflow side of a trial: one child run per trial, and closing a dead worker's runs."""
from __future__ import annotations

from typing import Any

from pipeline.config.studies import SweepConfig
from pipeline.sweep.space import layer_values, model_name
from pipeline.tracking import faults, runs
from pipeline.tracking.metrics import MetricBuffer
from pipeline.tracking.experiments import shape_label


class TrialRun:
    """The MLflow child run of one trial (``trial 7 F3 k5``), written through the client (one call per batch)."""

    def __init__(self, client: Any, experiment_id: str, parent_id: str, trial: Any, cfg: SweepConfig,
                 point: dict[str, Any], repeat_of: Any = None):
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self.client = client
        self.cfg = cfg
        self.number = trial.number
        self.repeat_of = repeat_of
        filters, kernels = layer_values(point, cfg)
        self.label = shape_label(filters, kernels) + (f" lr {point['lr']:.3g}" if "lr" in point else "")
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_id,
            MLFLOW_RUN_NAME: f"trial {trial.number} {self.label}",
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
        self.run_id = client.create_run(experiment_id, tags=tags).info.run_id
        try:
            trial.set_user_attr("mlflow_run_id", self.run_id)
            trial.set_user_attr("mlflow_parent_run_id", parent_id)
        except BaseException:  # the storage failed or a signal came: the run must not stay RUNNING
            runs.best_effort(faults.retry_locked, client.set_terminated, self.run_id, "FAILED")
            raise
        self.metrics = MetricBuffer(self.run_id, flush_every=5.0)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def finish(self, status: str, final: dict[str, float] | None = None, outcome: str = "") -> None:
        """End the run as ``status``, with its final values and a description of how the trial went."""
        from pipeline.tracking.experiments import NOTE_TAG

        if faults.lost():  # the tracking store is gone: the stage saves what it can and stops
            return
        if final:
            self.metrics.log(final, step=0)
        self.metrics.flush()
        what = f"Trial {self.number} of the Optuna study `{self.cfg.study_name}`: {objective_text(self.cfg)}, " \
               f"{self.label}."
        if self.repeat_of is not None:
            outcome += f" Same configuration as trial {self.repeat_of.number}: not trained again, its result reused."
        faults.retry_locked(self.client.set_tag, self.run_id, NOTE_TAG, f"{what}\n\n{outcome.strip()}")
        faults.retry_locked(self.client.set_terminated, self.run_id, status)


def objective_text(cfg: SweepConfig) -> str:
    """What a trial measures, in words."""
    seeds = len(cfg.trial_seeds)
    if cfg.objective == "success":
        return f"P(success) of the 1D detector over {seeds} seeds ({cfg.epochs} epochs each)"
    mean = f", the mean of {seeds} seeds" if seeds > 1 else ""
    return f"validation accuracy of {model_name(cfg)} on {cfg.dataset} after {cfg.epochs} epochs{mean}"


def close_stale_runs(tracking_uri: str, frozen_trial: Any) -> None:
    """A dead worker's trial: end its MLflow child (and that worker's parent) as KILLED."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for key in ("mlflow_run_id", "mlflow_parent_run_id"):
        run_id = frozen_trial.user_attrs.get(key)
        if not run_id:
            continue
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "killed_reason", f"worker heartbeat lost (trial {frozen_trial.number})")
                client.set_terminated(run_id, "KILLED")
        except Exception:  # noqa: BLE001 - never let MLflow bookkeeping stop the retry
            pass
