"""Secrets never leave the process: one redaction for every URL form, on everything printed,
tagged, logged as a param or written to an artifact.

The fast tests check the redaction itself and plant a password in every URL form of failing
commands. The slow test plants one password in a real PostgreSQL tracking store and Optuna
storage, runs every stage and every ``mlflow run`` entry point, and greps all output, both
databases and every artifact file for it: no hit, apart from the param that ``mlflow run -P``
itself records (and the command line it echoes), which is documented there.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from errorpath import case, error_lines, run_case, run_table_as_processes
from helpers import REPO

SECRET = "Pl4nt3d-s3cr3t"
FORMS = {  # every way a password sits in a store URL or a message about one
    "userinfo": f"postgresql://alice:{SECRET}@db-host:5432/optuna",
    "driver": f"postgresql+psycopg://alice:{SECRET}@db-host/optuna",
    "unencoded-at": f"postgresql://alice:x@{SECRET}@db-host/optuna",
    "percent-encoded": f"postgresql://alice:x%40{SECRET}%2F@db-host/optuna",
    "query": f"postgresql://alice@db-host/optuna?sslmode=require&password={SECRET}",
    "query-first": f"postgresql://alice@db-host/optuna?password={SECRET}",
    "sslpassword": f"postgresql://alice@db-host/optuna?sslpassword={SECRET}",
    "dsn": f"host=db-host user=alice password={SECRET} dbname=optuna",
    "http": f"http://alice:{SECRET}@mlflow-host:5000",
    "token": f"https://mlflow-host/api?token={SECRET}",
    "api-key": f"https://mlflow-host/?x=1&api_key={SECRET}",
    "in-a-message": f"cannot open 'postgresql://alice:{SECRET}@db-host:notaport/optuna': invalid port",
    "two-urls": f"postgresql://a:{SECRET}@h1/d,postgresql://b:{SECRET}@h2/d",
    "single-quote": f"postgresql://alice:it's-{SECRET}@db-host/optuna",  # URLs allow an unencoded '
    "quoted-url": f"store 'postgresql://alice:{SECRET}@db-host/optuna' failed",
}


@pytest.mark.parametrize("form", FORMS)
def test_redact_hides_every_form(form):
    from pipeline.tracking.redact import has_secret, redact

    hidden = redact(FORMS[form])
    assert SECRET not in hidden and "***" in hidden and has_secret(FORMS[form])
    assert redact(hidden) == hidden  # idempotent


def test_redact_leaves_urls_without_passwords_alone():
    from pipeline.tracking.redact import redact

    for text in ("sqlite:///mlflow.db", "http://mlflow-host:5000/api/2.0", "postgresql://alice@db-host/optuna",
                 "runs:/0123abcd/model", "password authentication failed for user alice", "a@b.c"):
        assert redact(text) == text


def test_a_password_seen_in_a_url_is_hidden_anywhere(monkeypatch):
    from pipeline.tracking import redact as r

    monkeypatch.setattr(r, "_SEEN", set())
    r.remember(f"postgresql://alice:x%40{SECRET}@db-host/optuna")
    assert SECRET not in r.redact(f"the driver said: wrong password x@{SECRET}")
    assert r.redact_tree({"a": [f"x@{SECRET}", 1]}) == {"a": ["***", 1]}


BAD = "127.0.0.1:9"  # nothing listens there
CASES = [
    case("tracking-userinfo", "train", "--tracking-uri", f"postgresql://u:{SECRET}@{BAD}/db", code=1),
    case("tracking-query", "train", "--tracking-uri", f"postgresql://u@{BAD}/db?password={SECRET}", code=1),
    case("tracking-percent", "train", "--tracking-uri", f"postgresql://u:p%40{SECRET}@{BAD}/db", code=1),
    case("tracking-bad-port", "train", "--tracking-uri", f"postgresql://u:{SECRET}@localhost:port/db"),
    case("tracking-http", "train", "--tracking-uri", f"http://u:{SECRET}@{BAD}", code=1),
    case("tracking-env", "train", env={"MLFLOW_TRACKING_URI": f"http://u:{SECRET}@{BAD}"}, code=1),
    case("tracking-unknown-scheme", "train", "--tracking-uri", f"foo://u:{SECRET}@h"),
    case("storage-userinfo", "sweep", "--storage", f"postgresql://u:{SECRET}@{BAD}/db", code=1),
    case("storage-unencoded-at", "sweep", "--storage", f"postgresql://u:p@{SECRET}@{BAD}/db"),
    case("storage-unknown-scheme", "sweep", "--storage", f"redis://u:{SECRET}@h/0"),
    case("summary-userinfo", "study-summary", "--storage", f"postgresql://u:{SECRET}@{BAD}/db", code=1),
    case("extra-argument", "train", f"postgresql://u:{SECRET}@h/db"),
]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_failing_commands_never_print_the_password(c, error_world):
    result = run_case(c, error_world)
    assert SECRET not in result[1] + result[2] and "***" in result[2]


@pytest.mark.slow
def test_failing_commands_as_real_processes(error_world):
    for _, out, err in run_table_as_processes(CASES, error_world):
        assert SECRET not in out + err


# --------------------------------------------------------------------------- every stage, a real password
def _pg(admin_url, sql):
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(sql)


def _dump(url) -> str:
    """Every row of every table of a database, as text."""
    import psycopg

    with psycopg.connect(url) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(f"{t}: {row[0]}" for t in tables for row in con.execute(f'SELECT t::text FROM "{t}" t'))


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_no_stage_and_no_entry_point_leaks_the_password(postgres_server, tmp_path, monkeypatch):
    import mlflow

    password = f"{SECRET}@{uuid.uuid4().hex[:6]}"  # with an '@', which must be percent-encoded in a URL
    encoded = password.replace("@", "%40")
    role, host = f"plant_{uuid.uuid4().hex[:6]}", postgres_server.split("@", 1)[1].rsplit("/", 1)[0]
    _pg(postgres_server, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    for db in ("mlf", "opt"):
        _pg(postgres_server, f"CREATE DATABASE {role}_{db} OWNER {role}")
    tracking = f"postgresql://{role}:{encoded}@{host}/{role}_mlf"  # userinfo form
    storage = f"postgresql://{role}@{host}/{role}_opt?password={encoded}"  # query form
    bare = {db: f"postgresql://{role}@{host}/{role}_{db}" for db in ("mlf", "opt")}  # for PGPASSWORD
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "PGPASSWORD"):
        env.pop(key, None)
    monkeypatch.chdir(tmp_path)
    client = mlflow.MlflowClient(tracking)
    experiment = client.create_experiment("secrets", artifact_location=str(tmp_path / "artifacts"))
    outputs = []

    def cli(*args):
        code, out, err = _run([sys.executable, "-m", "pipeline", *args, "--tracking-uri", tracking,
                               "--experiment-name", "secrets"] if args[0] != "study-summary" else
                              [sys.executable, "-m", "pipeline", *args], tmp_path, env)
        outputs.append(out + err)
        assert code == 0 and not error_lines(err), err[-2000:]
        return out

    prepared = re.search(r"data at (\S+)", cli("prepare-data", "--n", "30")).group(1)
    trained = re.search(r"results: run '[^']*' (\w+) at", cli("train", "--data-uri", prepared, "--epochs", "5")).group(1)
    small = ("--filters", "1,2", "--kernel-sizes", "3", "--seeds", "4", "--epochs", "20")
    pattern = ("--filters", "1,2", "--seeds", "4", "--steps", "20", "--test-pairs", "50")
    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(lambda a: cli(*a), [
            ("capacity", *small), ("evaluate", "--run-id", trained), ("inspect", "--run-id", trained, "--steps", "5"),
            ("sweep", "--storage", storage, "--study-name", "s", *small, "--n-trials", "2", "--progress", "false"),
            ("capacity", "--dataset", "digits", "--filters", "2", "--kernel-sizes", "3", "--seeds", "2",
             "--epochs", "1"),
            ("capacity-pattern", *pattern)]))
    capacity = re.search(r"results: run '[^']*' (\w+) at", done[0]).group(1)
    diagnose = ("--capacity-run", capacity, "--pairs", "1", "--slice-points", "5", "--long-factor", "2")
    cli("diagnose", *diagnose)
    cli("study-summary", "--storage", storage, "--study-name", "s")
    cli("reproduce", trained)

    # every MLproject entry point (main runs every stage again, nested): the tracking URI with its
    # password in the environment, the storage's password in PGPASSWORD, as the README says, never in -P
    penv = {**env, "PGPASSWORD": password, "MLFLOW_TRACKING_URI": tracking}
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")

    called = set()

    def entry(name, *params):
        called.add(name)
        cmd = [mlflow_bin, "run", str(REPO), "--env-manager", "local", "--experiment-id", experiment, "-e", name]
        for p in params:
            cmd += ["-P", p]
        code, out, err = _run(cmd, tmp_path, penv)
        assert code == 0, err[-3000:]
        return out + err

    small_p = ("filters=1,2", "kernel_sizes=3", "seeds=4", "epochs=20")
    with ThreadPoolExecutor(3) as pool:
        outputs += list(pool.map(lambda a: entry(*a), [
            ("prepare_data", "n=30"), ("train", "epochs=5"), ("evaluate", f"run_id={trained}"),
            ("inspect", f"run_id={trained}", "steps=5"), ("capacity", *small_p),
            ("sweep", f"storage={bare['opt']}", "study_name=p", *small_p, "n_trials=2", "progress=false"),
            ("main", "epochs=5", "sweep_trials=2", "sweep_seeds=4", f"storage={bare['opt']}"),
            ("capacity_pattern", "filters=1,2", "seeds=4", "steps=20", "test_pairs=50"),
            ("diagnose", f"capacity_run={capacity}", "pairs=1", "slice_points=5", "long_factor=2"),
            ("reproduce", f"run_id={trained}")]))

    import yaml

    assert called == set(yaml.safe_load((REPO / "MLproject").read_text())["entry_points"])  # every one of them

    # documented exception: a password given with -P anyway. MLflow itself logs it as the param
    # `storage` and echoes its command line; the stage says so in one line and logs nothing more.
    leaked = entry("sweep", f"storage={storage}", "study_name=leak", *small_p, "n_trials=1", "progress=false")
    assert "Note: `mlflow run -P` has already recorded a password in param(s) storage" in leaked
    echoed = [ln for ln in leaked.splitlines() if "=== Running command" in ln]
    assert len(echoed) == 1 and encoded in echoed[0]  # MLflow's echo: the grep below would see it
    outputs.append("\n".join(ln for ln in leaked.splitlines() if ln not in echoed))
    (leak_run,) = client.search_runs([experiment], "params.study_name = 'leak'")

    hits = [text for text in outputs if password in text or encoded in text or SECRET in text]
    assert not hits, hits[0][-2000:]
    admin = postgres_server.rsplit("/", 1)[0]
    assert SECRET in _dump(f"{admin}/{role}_mlf")  # the -P param: what the grep finds when there is a leak
    _pg(f"{admin}/{role}_mlf", f"DELETE FROM params WHERE run_uuid = '{leak_run.info.run_id}' AND key = 'storage'")
    for db in ("mlf", "opt"):
        assert SECRET not in _dump(f"{admin}/{role}_{db}"), db
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 50  # figures, tables, configs, models of every stage
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]


def test_run_names_and_descriptions_hide_a_url_the_user_gave(tracking_uri):
    """evaluate names its run and describes its data after --data-uri, which may hold a password."""
    import mlflow

    from pipeline.tracking import provenance, runs

    url = FORMS["userinfo"]
    with runs.stage_run("evaluate", run_name=f"evaluate {url}") as active:
        provenance.describe(f"Evaluates a model on {url}.", f"Read from {FORMS['query']}.")
    run = mlflow.MlflowClient(tracking_uri).get_run(active.info.run_id)
    assert SECRET not in run.info.run_name and "***" in run.info.run_name
    assert SECRET not in run.data.tags["mlflow.note.content"] and "***" in run.data.tags["mlflow.note.content"]
