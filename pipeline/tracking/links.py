"""Where a run's results are: its name (as MLflow has it), its id and its page in the MLflow UI."""
from __future__ import annotations

from pipeline.tracking.redact import redact

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def ui_link(experiment_id: str, run_id: str, base: str = LOCAL_UI) -> str:
    """A run's page in the MLflow UI, in its "Model training" view: MLflow 3.17's UI opens every
    experiment in its GenAI view (traces) unless the link asks for the other one."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def results_line(run_id: str) -> str:
    """The last line of a stage: ``results: run '<name>' <id> at <UI link>`` (and how to start the UI)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    info = mlflow.MlflowClient().get_run(run_id).info
    served = uri.startswith(("http://", "https://"))
    base = redact(uri).rstrip("/") if served else LOCAL_UI
    line = f"results: run '{info.run_name}' {run_id} at {ui_link(info.experiment_id, run_id, base)}"
    if not served:
        line += f" (after: mlflow ui --backend-store-uri {redact(uri)})"
    return line
