"""Metrics sent to MLflow in batches: at SQLite's ~20 ms per call, one call per metric per
epoch would cost more than the training itself."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from pipeline.errors import interrupt_pending
from pipeline.tracking import faults

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call


class MetricBuffer:
    """Collects metrics and sends them with ``log_batch`` (SQLite costs ~20 ms per call).

    Flushes when ``flush_every`` seconds have passed since the last flush (so the UI
    stays live on long runs) and on ``close``; ``on_flush`` runs with every flush (to send
    other pending work, such as images, at the same pace). A held signal stops a flush early,
    and ``flush(seconds)`` sends what fits in that time: the rest (``pending``) goes into a
    checkpoint, and the resumed run sends it first (``restore``). Per metric, the steps up to
    ``logged_through`` are in the store already (a resumed run recomputes them): not sent again.
    """

    def __init__(self, run_id: str | None = None, flush_every: float = 10.0,
                 on_flush: Callable[[], None] | None = None, logged_through: Mapping[str, int] | None = None):
        import mlflow

        self.client = mlflow.MlflowClient()
        self.run_id = run_id or mlflow.active_run().info.run_id
        self.flush_every = flush_every
        self.on_flush = on_flush
        self.logged_through = dict(logged_through or {})
        self._pending: list[Any] = []
        self._last = time.monotonic()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, int(step)) for k, v in metrics.items()
                             if step > self.logged_through.get(k, -1))
        if time.monotonic() - self._last > self.flush_every:
            self.flush()

    def flush(self, seconds: float | None = None) -> None:
        """Send what is pending; with ``seconds``, only what fits in that time (a batch at a time)."""
        if faults.lost():  # the store is gone: keep them for the stage's rescue, do not wait on it
            return
        end = None if seconds is None else time.monotonic() + seconds
        while self._pending:
            if end is not None and time.monotonic() > end or end is None and interrupt_pending():
                return
            faults.retry_locked(self.client.log_batch, self.run_id, metrics=self._pending[:MAX_BATCH])
            del self._pending[:MAX_BATCH]
        if self.on_flush is not None:
            self.on_flush()
        self._last = time.monotonic()

    def pending(self) -> list[tuple[str, float, int, int]]:
        """What is not sent yet, as (key, value, timestamp, step): for a checkpoint."""
        return [(m.key, m.value, m.timestamp, m.step) for m in self._pending]

    def restore(self, rows: list[tuple[str, float, int, int]]) -> None:
        """Queue a checkpoint's unsent metrics, first."""
        from mlflow.entities import Metric

        self._pending[:0] = [Metric(*row) for row in rows if row[3] > self.logged_through.get(row[0], -1)]

    def drop_pending(self) -> None:
        """Forget what is pending (it is in a checkpoint now)."""
        self._pending.clear()

    def __enter__(self) -> "MetricBuffer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()  # also on errors: what was measured before a failure is kept


def metric_steps(run_id: str) -> dict[str, int]:
    """Per metric of the run, the last step in the store (what a resumed run must not log again)."""
    import mlflow

    client = mlflow.MlflowClient()
    keys = faults.retry_locked(client.get_run, run_id).data.metrics
    return {k: max(m.step for m in faults.retry_locked(client.get_metric_history, run_id, k)) for k in keys}


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
