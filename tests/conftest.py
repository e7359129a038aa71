"""Shared fixtures: every test talks to a throw-away MLflow store in a temp directory."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# what a run leaves in its working directory: a test that runs a stage in the repository would leave them
# there, and `make run` afterwards would resume that study against another MLflow store
GENERATED = ("mlflow.db", "optuna.db", "optuna.journal", "mlruns", "pipeline-rescue")


@pytest.fixture(autouse=True, scope="session")
def _repository_stays_clean():
    from helpers import REPO

    before = {name for name in GENERATED if (REPO / name).exists()}
    yield
    leaked = sorted(name for name in GENERATED if (REPO / name).exists() and name not in before)
    assert not leaked, f"the tests left {leaked} in the repository {REPO}"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite store (artifacts under tmp_path/mlruns), set as $MLFLOW_TRACKING_URI."""
    import mlflow

    from helpers import new_store
    from pipeline.tracking import compat

    monkeypatch.chdir(tmp_path)
    uri = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    compat.forget_active_experiment()  # a stage's choice in another store
    mlflow.set_tracking_uri(uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def client(tracking_uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri)


# --------------------------------------------------------------------------- PostgreSQL
def _find_pg_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="session")
def postgres_server():
    """Base URL of a PostgreSQL server on 127.0.0.1.

    Uses $PIPELINE_TEST_POSTGRES_URL (set by .ci/run); otherwise starts a throw-away server
    from the local PostgreSQL binaries; otherwise skips with the reason.
    """
    import socket
    import subprocess

    url = os.environ.get("PIPELINE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    pg_bin = _find_pg_bin()
    if pg_bin is None:
        pytest.skip("needs PostgreSQL: set PIPELINE_TEST_POSTGRES_URL or install postgresql (apt-get install postgresql)")
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))  # not under pytest's 0700 tmp: postgres must reach it
    root.chmod(0o755)
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        subprocess.run(["chown", "-R", "postgres", str(root)], check=True)
        run_as = ["runuser", "-u", "postgres", "--"]
    (root / "pw").write_text("test-secret\n")
    subprocess.run(["chown", "postgres", str(root / "pw")] if run_as else ["true"], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*run_as, str(pg_bin / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                    "-A", "scram-sha-256", f"--pwfile={root / 'pw'}"], check=True, capture_output=True)
    subprocess.run([*run_as, str(pg_bin / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres:test-secret@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(pg_bin / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh database on the test server; yields its URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"


# --------------------------------------------------------------------------- the error path's world
@pytest.fixture(scope="session")
def error_world(tmp_path_factory):
    """Runs and a study written before the error-path cases (``errorpath.py``), and their snapshot."""
    from errorpath import build_world, snapshot

    world = build_world(tmp_path_factory.mktemp("world"))
    return world, snapshot(world)
