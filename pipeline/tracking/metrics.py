"""Metrics sent to MLflow in batches: at SQLite's ~20 ms per call, one call per metric per
epoch would cost more than the training itself."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from pipeline.tracking import faults

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call


class MetricBuffer:
    """Collects metrics and sends them with ``log_batch`` (SQLite costs ~20 ms per call).

    Flushes when ``flush_every`` seconds have passed since the last flush (so the UI
    stays live on long runs) and on ``close``; ``on_flush`` runs with every flush (to send
    other pending work, such as images, at the same pace).
    """

    def __init__(self, run_id: str | None = None, flush_every: float = 10.0,
                 on_flush: Callable[[], None] | None = None):
        import mlflow

        self.client = mlflow.MlflowClient()
        self.run_id = run_id or mlflow.active_run().info.run_id
        self.flush_every = flush_every
        self.on_flush = on_flush
        self._pending: list[Any] = []
        self._last = time.monotonic()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, int(step)) for k, v in metrics.items())
        if time.monotonic() - self._last > self.flush_every:
            self.flush()

    def flush(self) -> None:
        if faults.lost():  # the store is gone: keep them for the stage's rescue, do not wait on it
            return
        for i in range(0, len(self._pending), MAX_BATCH):
            faults.retry_locked(self.client.log_batch, self.run_id, metrics=self._pending[i : i + MAX_BATCH])
        self._pending.clear()
        if self.on_flush is not None:
            self.on_flush()
        self._last = time.monotonic()

    def __enter__(self) -> "MetricBuffer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()  # also on errors: what was measured before a failure is kept


def log_batch(run_id: str, metrics: Mapping[str, float], params: Mapping[str, Any] | None = None) -> None:
    """A run's metrics (step 0) and params in one call: for runs that are logged in one go, like a study's children."""
    import mlflow
    from mlflow.entities import Metric, Param

    ts = int(time.time() * 1000)
    faults.retry_locked(mlflow.MlflowClient().log_batch, run_id,
                        metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
                        params=[Param(k, str(v)) for k, v in (params or {}).items()])


def log_metrics(metrics: Mapping[str, float], step: int | None = None, model_id: str | None = None) -> None:
    """Metrics of the active run in one call (for a stage's few summary numbers); with ``model_id`` (MLflow 3's
    LoggedModel, ``serving.model_id_of``) also the model's, so that the UI's Models tab compares models by them."""
    import mlflow

    linked = {"model_id": model_id} if model_id else {}  # MLflow 2 has no such argument (and no model ids)
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, **linked)
