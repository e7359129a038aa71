"""Reading back what a finished run computed, so that ``pipeline main`` can reuse it instead of running
its stage again (``identity.find_requested`` finds the run): its last metrics, its curves, its model
and its tables.
"""
from __future__ import annotations

from typing import Any, Iterable


def last_metrics(run_id: str) -> dict[str, float]:
    """The last value of every metric of the run."""
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def curves(run_id: str, keys: Iterable[str]) -> dict[str, list[float]]:
    """The run's metric histories in step order, by key (an absent metric gives an empty list)."""
    import mlflow

    client = mlflow.MlflowClient()
    out = {}
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        out[key] = [m.value for m in history]
    return out


def all_curves(run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run as its (step, value) history in step order."""
    import mlflow

    client = mlflow.MlflowClient()
    out = {}
    for key in sorted(client.get_run(run_id).data.metrics):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        out[key] = [(m.step, m.value) for m in history]
    return out


def model_weights(run_id: str) -> dict[str, Any] | None:
    """The state dict (tensors on the CPU) of the model that the run logged, or None when it logged none."""
    import mlflow

    from pipeline.tracking import serving

    run = mlflow.MlflowClient().get_run(run_id)
    if not mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                       filter_string=f"source_run_id = '{run_id}'", output_format="list"):
        return None
    return serving.load_module(serving.model_uri_of_run(run_id), "cpu").state_dict()


def experiment_id() -> str:
    """The experiment of the active run."""
    import mlflow

    return mlflow.active_run().info.experiment_id


def tag_reused(reused: dict[str, str]) -> None:
    """Tag the active run (``main``'s parent) with the runs it reused: ``reused.<stage label>=<run id>``."""
    import mlflow

    if reused:
        mlflow.set_tags({f"reused.{label}": run_id for label, run_id in reused.items()})


def finished_run(run_id: str) -> Any:
    """The FINISHED run with this id; a run that is not there or not finished is bad input."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.errors import ConfigError
    from pipeline.tracking.faults import is_store_fault

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        if is_store_fault(err):
            raise
        raise ConfigError(f"run {run_id} is not in the tracking store {mlflow.get_tracking_uri()}") from None
    if run.info.status != "FINISHED":
        raise ConfigError(f"run {run_id} is {run.info.status}: only a FINISHED run can be reproduced")
    return run


def experiment_name(experiment_id: str) -> str:
    import mlflow

    return mlflow.MlflowClient().get_experiment(experiment_id).name


def children(run_id: str) -> dict[str, str]:
    """The child runs of a run (a capacity grid's cells), by name (without the `` (2)`` that a taken name gets):
    name -> run id."""
    import re

    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_runs([client.get_run(run_id).info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=50000)
    return {re.sub(r" \(\d+\)$", "", r.info.run_name): r.info.run_id for r in found}
