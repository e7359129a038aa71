"""MLflow's system metrics (the UI's System metrics tab: CPU, memory, disk, network, and GPU where
``pynvml`` finds one) for the runs of the stages that train: train, capacity, capacity-pattern,
diagnose and each sweep trial.

MLflow samples once per ``SAMPLING_SECONDS`` (``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides
it) in a thread of its own and logs a sample only once an interval has passed, so a shorter run
gets none and pays only for starting and stopping the thread. ``--no-system-metrics`` turns it off.
"""
from __future__ import annotations

import logging
from typing import Any

SAMPLING_SECONDS = 10  # MLflow's default too: a 500-epoch synthetic train (a few seconds) is untouched
LOGGER = "mlflow.system_metrics"  # says "Started monitoring ..." and "Skip logging GPU metrics" at INFO, each run


def wanted(cfg: Any) -> bool | None:
    """Whether the run of ``cfg`` records system metrics: its ``--no-system-metrics`` turned around, or None
    (MLflow's ``$MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` decides) for a stage that has no such option."""
    off = getattr(cfg, "no_system_metrics", None)
    return None if off is None else not off


def quiet() -> None:
    """MLflow's monitor says nothing on the way in and out of every run: the stage's own lines stay readable."""
    logging.getLogger(LOGGER).setLevel(logging.WARNING)


def start(run_id: str, tracking_uri: str | None = None) -> Any:
    """Start sampling for ``run_id``, a run made through the client (a sweep trial); ``stop`` ends it.
    (``mlflow.start_run(log_system_metrics=True)`` does this for a run of the fluent API.)"""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    quiet()
    monitor = SystemMetricsMonitor(run_id, sampling_interval=SAMPLING_SECONDS, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def stop(monitor: Any) -> None:
    """Stop sampling and log what was sampled (before its run ends); None: nothing was started."""
    if monitor is not None:
        monitor.finish()
