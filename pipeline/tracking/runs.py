"""MLflow runs: the store a stage writes to, the run it writes in, and its params and tags.

Conventions (DESIGN.md): the tracking URI is ``--tracking-uri``, else
``$MLFLOW_TRACKING_URI``, else MLflow's default ``sqlite:///mlflow.db`` in the working
directory; every stage runs in its own run, nested under the active run when there is one.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.errors import ConfigError
from pipeline.tracking import experiments
from pipeline.tracking.redact import redact, scrub
from pipeline.tracking.stores import enable_wal, store_init_lock

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI in force: explicit > $MLFLOW_TRACKING_URI > sqlite:///mlflow.db."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure(tracking_uri: str | None = None, experiment_name: str | None = None) -> str:
    """Point MLflow at the store (explicit > env > sqlite:///mlflow.db) and pick the experiment
    (``experiments.experiment_name``: explicit > $MLFLOW_EXPERIMENT_NAME > convnet-study)."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep logs readable
    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    _open_store(uri)
    if mlflow.active_run() is None:
        if os.environ.get("MLFLOW_RUN_ID"):  # `mlflow run` made the run, in the experiment that it chose
            experiments.tag_experiment(experiments.current_experiment_id())
        else:
            experiments.use_experiment(experiments.experiment_name(experiment_name))
    return uri


def _open_store(uri: str) -> None:
    """Create or upgrade a database store, or fail at once, in one line, if it cannot be reached.

    Without this an unreachable server surfaces minutes later (MLflow retries HTTP requests
    with back-off) as a traceback.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    problem = None
    try:
        if uri.startswith(("sqlite:///", "postgresql", "mysql")):
            with store_init_lock(uri, "mlflow"):  # workers started together must not race its migrations
                enable_wal(uri)
                mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates/upgrades the tables
        elif uri.startswith(("http://", "https://")):
            problem = _probe_server(uri)
    except (OSError, ValueError, sqlite3.Error, SQLAlchemyError, MlflowException, ImportError) as err:
        problem = scrub(err, uri)
    if problem:
        raise ConfigError(f"cannot open the MLflow tracking store {redact(uri)}: {problem}")


def _probe_server(uri: str) -> str | None:
    """Why ``uri`` is not an MLflow server that answers, or None. One request, 10 s at most."""
    import requests  # as MLflow's client talks to a server (user:password@ in the URL included)

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.exceptions.ConnectionError as err:
        # requests nests the reason three deep; the socket's own words are what helps
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
        return f"no answer ({errno.group(1) if errno else type(err).__name__})"
    with response:
        if response.status_code in (200, 401, 403):  # an auth layer may guard /health: MLflow will say
            return None
        return f"/health answered HTTP {response.status_code}; is it an MLflow tracking server?"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The code version of this checkout (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def stage_run(stage: str, run_name: str | None = None, tags: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Start the run of one stage (nested under an active run) and tag it.

    Under ``mlflow run`` the first stage adopts the run that MLflow created
    (``MLFLOW_RUN_ID``). An exception ends the run FAILED, Ctrl-C ends it KILLED.
    """
    import mlflow

    nested = mlflow.active_run() is not None
    if run_name:
        run_name = experiments.unique_run_name(run_name, experiments.current_experiment_id())
    run = mlflow.start_run(run_name=run_name, nested=nested)
    status = "FINISHED"
    try:
        all_tags = {"stage": stage}
        commit = git_commit()
        if commit:
            all_tags["git_commit"] = commit
        all_tags.update({k: str(v) for k, v in (tags or {}).items() if v is not None})
        mlflow.set_tags(all_tags)
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status=status)


def log_params_safely(params: Mapping[str, Any]) -> None:
    """Log params, never clashing with values already on the run.

    ``mlflow run -P lr=5e-2`` logs ``lr=5e-2`` before our code runs; logging the resolved
    ``0.05`` again would raise. Keys already present are skipped when they mean the same
    value, and logged as ``resolved.<key>`` when they do not.
    """
    import mlflow

    run = mlflow.active_run()
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    out: dict[str, str] = {}
    for key, value in params.items():
        text = "" if value is None else str(value)
        if key in existing:
            if not _same_value(existing[key], text):
                out[f"resolved.{key}"] = text
            continue
        out[key] = text
    if out:
        mlflow.log_params(out)


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    except ValueError:
        empty = ("", "none", "''", '""')  # `mlflow run` logs an empty -P value as the literal ''
        return a.strip().lower() in empty and b.strip().lower() in empty
