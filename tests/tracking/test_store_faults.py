"""Faults of the stores and their threads, as a review of the error path found them: each is one
line with the right exit status, and none is taken for bad input (or bad input for a fault)."""
from __future__ import annotations

import threading

import pytest

from errorpath import run_in_process


def test_a_database_url_is_not_checked_as_a_local_file(tmp_path, monkeypatch):
    """`postgresql://u@h/pipeline` names a database, not the `pipeline` folder of the current directory."""
    from pipeline.tracking.stores import check_writable

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline").mkdir()
    check_writable("postgresql://u@db-host/pipeline", "--tracking-uri")  # no error: nothing local to check
    (tmp_path / "store.db").write_bytes(b"")
    check_writable(f"sqlite:///{tmp_path / 'store.db'}", "--tracking-uri")


def test_a_failing_background_thread_is_one_line(capsys):
    """Optuna's heartbeat thread dies with its database: one line like the main thread's, no traceback."""
    from pipeline.tracking.faults import report_thread_error

    def boom():
        import sqlite3

        raise sqlite3.OperationalError("unable to open database file")

    caught = []
    old = threading.excepthook
    threading.excepthook = lambda args: (caught.append(args), report_thread_error(args, debug=False))
    try:
        t = threading.Thread(target=boom, name="optuna-heartbeat")
        t.start()
        t.join()
    finally:
        threading.excepthook = old
    err = capsys.readouterr().err
    assert caught and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("Error: ") and "unable to open database file" in err and "optuna-heartbeat" in err


@pytest.mark.parametrize("where", ["pipeline.tracking.serving", "pipeline.data.io"])
def test_a_store_that_fails_while_loading_is_not_bad_input(where, monkeypatch, tracking_uri):
    """A model or data set that cannot be fetched because the server is down is exit 1, not 'no model there'."""
    import importlib

    import mlflow
    import requests
    import torch

    mlflow_pytorch = importlib.import_module("mlflow.pytorch")  # the module itself, not MLflow's lazy loader

    from pipeline.errors import ConfigError

    def down(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Connection refused")

    if where == "pipeline.tracking.serving":
        from pipeline.tracking.serving import load_module as call

        monkeypatch.setattr(mlflow_pytorch, "load_model", down)
        args = ("runs:/0123456789abcdef0123456789abcdef/model", torch.device("cpu"))
    else:
        from pipeline.data.io import bundle_from_uri as call

        monkeypatch.setattr(mlflow.artifacts, "download_artifacts", down)
        args = ("runs:/0123456789abcdef0123456789abcdef/data",)
    with pytest.raises(requests.exceptions.ConnectionError):
        call(*args)
    monkeypatch.setattr(mlflow_pytorch, "load_model", lambda *a, **k: (_ for _ in ()).throw(OSError(2, "no file")))
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(2, "no file")))
    with pytest.raises(ConfigError):  # what is simply not there stays bad input
        call(*args)


def test_sweep_threads_zero_is_torchs_default(error_world):
    world, _ = error_world
    code, _, err = run_in_process(["sweep", "--storage", "memory", "--study-name", "t0", "--threads", "0",
                                   "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "2", "--epochs", "5",
                                   "--n-trials", "1", "--progress", "false"], {"MLFLOW_TRACKING_URI": world.uri},
                                  world.root)
    assert code == 0, err


def test_a_busy_sqlite_store_is_waited_for_not_lost(monkeypatch):
    """Several workers on one SQLite file: a write that meets 'database is locked' is tried again (the
    signal test once saw a run that could not be ended stay RUNNING); other faults are not retried."""
    import sqlite3

    from pipeline.tracking import faults

    monkeypatch.setattr(faults.time, "sleep", lambda s: None)
    calls = []

    def busy_twice(x):
        calls.append(x)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return x * 2

    assert faults.retry_locked(busy_twice, 21) == 42 and len(calls) == 3

    def gone():
        calls.append("gone")
        raise sqlite3.OperationalError("unable to open database file")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError):
        faults.retry_locked(gone)
    assert calls == ["gone"]
    calls.clear()
    monkeypatch.setattr(faults, "LOCK_RETRY_S", 0.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # and not for ever
        faults.retry_locked(busy_twice, 1)
    assert len(calls) == 1
