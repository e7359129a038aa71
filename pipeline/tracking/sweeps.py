"""The MLflow calls of a sweep: the trials' child runs, the parent run's summary, and closing the runs
of a worker that died. ``pipeline/sweep/`` calls these and never imports MLflow itself."""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.tracking import faults, runs, system
from pipeline.tracking.redact import redact

_monitors: dict[str, Any] = {}  # run id -> the system metrics monitor of a trial's run, until the run ends


def client(tracking_uri: str | None = None) -> Any:
    """The client that writes the trials' child runs (one call per batch, not the fluent API's active run)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri)


def create_child_run(mlflow_client: Any, experiment_id: str, parent_id: str, name: str,
                     tags: Mapping[str, str], system_metrics: bool = False) -> str:
    """A run named ``name`` under ``parent_id``, RUNNING, sampling system metrics (``system.py``) until it is
    ended here when ``system_metrics``; its id."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    all_tags = {MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: name, **tags}
    run_id = mlflow_client.create_run(experiment_id, tags=all_tags).info.run_id
    if system_metrics:
        _monitors[run_id] = system.start(run_id, mlflow_client.tracking_uri)
    return run_id


def fail_run(mlflow_client: Any, run_id: str, status: str = "FAILED") -> None:
    """End ``run_id`` FAILED (KILLED: a signal came), on the way out of another failure (which this must not hide)."""
    runs.best_effort(system.stop, _monitors.pop(run_id, None))
    runs.best_effort(faults.retry_locked, mlflow_client.set_terminated, run_id, status)


def log_params(mlflow_client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    mlflow_client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def end_run(mlflow_client: Any, run_id: str, status: str, note: str) -> None:
    """Describe ``run_id`` with ``note`` (the UI's description), log its last system metrics, and end it as ``status``."""
    from pipeline.tracking.experiments import NOTE_TAG

    system.stop(_monitors.pop(run_id, None))
    faults.retry_locked(mlflow_client.set_tag, run_id, NOTE_TAG, note)
    faults.retry_locked(mlflow_client.set_terminated, run_id, status)


def kill_if_running(tracking_uri: str, run_id: str, reason: str) -> None:
    """End ``run_id`` as KILLED, tagged with ``reason``, if it is still RUNNING."""
    mlflow_client = client(tracking_uri)
    if mlflow_client.get_run(run_id).info.status == "RUNNING":
        mlflow_client.set_tag(run_id, "killed_reason", reason)
        mlflow_client.set_terminated(run_id, "KILLED")


def kill_command(tracking_uri: str, run_id: str) -> str:
    """The shell command that ends ``run_id`` as KILLED by hand (the password, if any, hidden)."""
    return (f"python -c \"import mlflow; mlflow.MlflowClient({redact(tracking_uri)!r})"
            f".set_terminated({run_id!r}, 'KILLED')\"")


def run_exists(tracking_uri: str, run_id: str) -> bool:
    """Whether the store at ``tracking_uri`` holds ``run_id`` (a store that fails otherwise raises)."""
    from mlflow.exceptions import MlflowException

    try:
        client(tracking_uri).get_run(run_id)
        return True
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    return False


def log_summary(best: list[dict[str, Any]], metrics: Mapping[str, float]) -> None:
    """On the active (parent) run: the best trial(s) as ``best_trials.json``, the first one's number and
    params as tags and its value as ``best_value``, and ``metrics``."""
    import mlflow

    mlflow.log_dict({"best_trials": best}, "best_trials.json")
    if best:
        b = best[0]
        mlflow.set_tags({"best_trial_number": b["number"], "best_params": str(b["params"])})
        metrics = {**metrics, "best_value": b["values"][0]}
    mlflow.log_metrics(dict(metrics))


def tag_best(mlflow_client: Any, run_ids: list[str], study_name: str | None = None) -> None:
    """Tag the runs of the best trial(s) ``best_trial = true``; given ``study_name``, take the tag off the runs of
    the study in the active run's experiment that an earlier sweep tagged and that are no longer best (so that
    ``tags.best_trial = 'true'`` finds the study's best trials as they are now).

    Workers that finish together tag the same best run: on PostgreSQL the losers of that race get a
    unique violation on the tag's key, which means the tag is there already (checked, not assumed)."""
    from mlflow.exceptions import MlflowException

    if study_name is not None:
        import mlflow

        for run in mlflow_client.search_runs([mlflow.active_run().info.experiment_id], "tags.best_trial = 'true'"):
            if run.data.tags.get("study_name") == study_name and run.info.run_id not in run_ids:
                mlflow_client.delete_tag(run.info.run_id, "best_trial")
    for run_id in run_ids:
        try:
            mlflow_client.set_tag(run_id, "best_trial", "true")
        except MlflowException as err:
            if "unique" not in str(err).lower() or mlflow_client.get_run(run_id).data.tags.get("best_trial") != "true":
                raise
