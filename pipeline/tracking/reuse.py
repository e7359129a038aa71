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


def model_uri(run_id: str) -> str | None:
    """``runs:/<id>/<name>`` of the (first) model that the run logged, or None."""
    import mlflow

    run = mlflow.MlflowClient().get_run(run_id)
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"runs:/{run_id}/{found[0].name}" if found else None


def experiment_id() -> str:
    """The experiment of the active run."""
    import mlflow

    return mlflow.active_run().info.experiment_id


def tag_reused(reused: dict[str, str]) -> None:
    """Tag the active run (``main``'s parent) with the runs it reused: ``reused.<stage label>=<run id>``."""
    import mlflow

    if reused:
        mlflow.set_tags({f"reused.{label}": run_id for label, run_id in reused.items()})
