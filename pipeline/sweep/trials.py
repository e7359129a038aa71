"""The MLflow side of a trial: one child run per trial, and closing a dead worker's runs."""
from __future__ import annotations

from typing import Any

from pipeline.config.studies import SweepConfig
from pipeline.sweep.space import model_name
from pipeline.tracking import faults, runs
from pipeline.tracking.metrics import MetricBuffer
from pipeline.tracking.redact import redact


class TrialRun:
    """The MLflow child run of one trial, written through the client (one call per batch)."""

    def __init__(self, client: Any, experiment_id: str, parent_id: str, trial: Any, cfg: SweepConfig):
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self.client = client
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_id,
            MLFLOW_RUN_NAME: f"trial-{trial.number}",
            "stage": "sweep-trial",
            "study_name": cfg.study_name,
            "trial_number": str(trial.number),
            "objective": cfg.objective,
            "recipe": cfg.recipe,
            "dataset": cfg.dataset or "synthetic",
            "model": model_name(cfg),
            "seed": str(cfg.sampler_seed),
        }
        commit = runs.git_commit()
        if commit:
            tags["git_commit"] = commit
        self.run_id = client.create_run(experiment_id, tags=tags).info.run_id
        trial.set_user_attr("mlflow_run_id", self.run_id)
        trial.set_user_attr("mlflow_parent_run_id", parent_id)
        self.metrics = MetricBuffer(self.run_id, flush_every=5.0)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def finish(self, status: str, final: dict[str, float] | None = None, error: str | None = None) -> None:
        if faults.lost():  # the tracking store is gone: the stage saves what it can and stops
            return
        if final:
            self.metrics.log(final, step=0)
        self.metrics.flush()
        if error:
            self.client.set_tag(self.run_id, "error", redact(error)[:500])
        self.client.set_terminated(self.run_id, status)


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
