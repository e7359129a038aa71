"""Paths and helpers that test modules import (fixtures live in conftest.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

_STORE_TEMPLATE: list[Path] = []  # an empty SQLite store, made once per test process (new_store)


def new_store(folder: Path) -> str:
    """``sqlite:///<folder>/mlflow.db``, an empty MLflow store as MLflow makes one with ``folder`` as the working
    directory (the Default experiment's artifacts under ``folder/mlruns/0``), copied from one made once per test
    process: MLflow creates and migrates its tables in about 1.4 s, a copy takes milliseconds."""
    if not _STORE_TEMPLATE:
        _STORE_TEMPLATE.append(_make_store(Path(tempfile.mkdtemp(prefix="store-template-"))))
    db = folder / "mlflow.db"
    shutil.copyfile(_STORE_TEMPLATE[0], db)
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # where MLflow puts it: the working directory's mlruns
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (str(folder / "mlruns" / "0"),))
    return f"sqlite:///{db}"


def _make_store(folder: Path) -> Path:
    """A store made by MLflow itself in ``folder`` (its working directory meanwhile); the database's path."""
    import mlflow

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    finally:
        os.chdir(cwd)
    return folder / "mlflow.db"


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m pipeline ARGS`` in a subprocess; returns (exit code, stdout, stderr)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_url(url: str, server, timeout_s: float = 120, what: str = "the server") -> None:
    """Poll ``url`` until it answers; fail if the ``server`` process exits first or time runs out."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, f"{what} did not start"
            time.sleep(1)


def retried_from(trial):
    """The number of the trial that ``trial`` retries (None for a first try), through Optuna's public API."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
