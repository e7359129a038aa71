"""The Optuna sweep: states in MLflow, shared storage, heartbeats, grid = capacity grid."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, retried_from, run_cli
from pipeline.config.studies import SweepConfig
from pipeline.sweep import stage as sweep

FAST = ["--seeds", "8", "--epochs", "60", "--progress", "false"]


def _optuna(url):
    import optuna

    return optuna


def _worker(*args, cwd=None, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("MLFLOW_RUN_ID", None)
    return subprocess.Popen([sys.executable, "-m", "pipeline", "sweep", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trial_runs(client, study_name):
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, max_results=5000)
    return [r for r in runs if r.data.tags.get("stage") == "sweep-trial" and r.data.tags.get("study_name") == study_name]


def _load(study_name, storage):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage)


BAD = [
    (["--filters", ""], "empty search space"),
    (["--kernel-sizes", "3,4"], "odd"),
    (["--sampler", "annealing"], "unknown sampler"),
    (["--n-trials", "0"], "--n-trials"),
    (["--tau", "1.5"], "--tau"),
    (["--lr-min", "0.1"], "--lr-max"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_error(args, needle, tracking_uri):
    code, out, err = run_cli("sweep", *args)
    assert code == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err


def test_unreachable_storage_fails_fast_without_the_password(tracking_uri):
    t0 = time.monotonic()
    code, out, err = run_cli("sweep", "--storage", "postgresql://alice:s3cr3t-pw@127.0.0.1:1/nodb", *FAST)
    assert time.monotonic() - t0 < 30
    assert code == 1 and "Traceback" not in err  # a server that does not answer: the environment, not the input
    assert "s3cr3t-pw" not in out + err and "***" in err
    assert len(err.strip().splitlines()) == 1 and "cannot open Optuna storage" in err


def test_pruned_and_complete_trials_show_their_real_state(client):
    cfg = SweepConfig(objective="accuracy", study_name="acc", epochs=30, n_trials=8, filters=(1, 2, 3, 4),
                      kernel_sizes=(3, 5), sampler="random", progress=False, pruner_startup_trials=2,
                      pruner_warmup_epochs=1)
    result = sweep.run(cfg, echo=lambda s: None)
    study = _load("acc", "sqlite:///optuna.db")
    runs = {r.data.tags["trial_number"]: r for r in _trial_runs(client, "acc")}
    assert len(runs) == len(study.trials) == 8
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for t in study.trials:
        run = runs[str(t.number)]
        assert run.info.status == expected[t.state.name]
        assert run.data.params["filters"] == str(t.params["filters"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        trained = "repeat_of" not in t.user_attrs  # a repeat replays an earlier trial, untrained
        assert steps == list(range(1, len(steps) + 1)) and (len(steps) >= 1) == trained
        assert run.data.tags["mlflow.parentRunId"] == result.run_id
    assert result.counts.get("PRUNED", 0) >= 1, result.counts
    parent = client.get_run(result.run_id)
    assert parent.data.tags["study_name"] == "acc" and parent.data.tags["storage"] == "sqlite:///optuna.db"
    arts = {a.path for a in client.list_artifacts(result.run_id)} | {
        a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert {"trials.csv", "best_trials.json", "figures/optimization_history.png", "figures/slice.png"} <= arts
    best = [r for r in runs.values() if r.data.tags.get("best_trial") == "true"]
    assert len(best) == 1 and best[0].data.tags["trial_number"] == str(study.best_trial.number)


def test_resume_and_summary_and_optuna_cli(tracking_uri):
    for _ in range(2):  # the second invocation resumes the same study
        code, out, err = run_cli("sweep", "--study-name", "resume", "--n-trials", "3", "--sampler", "random", *FAST)
        assert code == 0, err
    assert len(_load("resume", "sqlite:///optuna.db").trials) == 6
    code, out, err = run_cli("study-summary", "--study-name", "resume")
    assert code == 0 and "6 complete" in out and "top trial" in out
    optuna_bin = os.path.join(os.path.dirname(sys.executable), "optuna")
    studies = subprocess.run([optuna_bin, "studies", "--storage", "sqlite:///optuna.db"], capture_output=True,
                             text=True)
    assert studies.returncode == 0 and "resume" in studies.stdout, studies.stderr
    trials = subprocess.run([optuna_bin, "trials", "--study-name", "resume", "--storage", "sqlite:///optuna.db",
                             "-f", "json"], capture_output=True, text=True)
    assert trials.returncode == 0 and trials.stdout.count('"COMPLETE"') == 6, trials.stderr
    code, out, err = run_cli("study-summary", "--study-name", "nope")
    assert code == 2 and "no study 'nope'" in err


def test_two_workers_on_the_default_local_storage(client, tmp_path):
    procs = [_worker("--study-name", "pair", "--n-trials", "8", "--sampler", "random", "--sampler-seed", str(i),
                     *FAST, cwd=tmp_path) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    study = _load("pair", "sqlite:///optuna.db")
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 16
    runs = _trial_runs(client, "pair")
    assert len(runs) == 16 and all(r.info.status == "FINISHED" for r in runs)


def test_killed_worker_trial_is_failed_retried_and_its_run_closed(client, tmp_path):
    # Both workers run the same study settings (a resumed study refuses others): trials of a few seconds.
    common = ["--study-name", "kill", "--sampler", "grid", "--filters", "2,3", "--kernel-sizes", "3",
              "--heartbeat-interval", "1", "--grace-period", "2", "--n-trials", "20", "--progress", "false",
              "--seeds", "512", "--epochs", "8000"]
    first = _worker(*common, cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    deadline = time.monotonic() + 120
    running = None
    while time.monotonic() < deadline and running is None:
        time.sleep(0.5)
        try:
            trials = _load("kill", storage).trials
        except Exception:  # noqa: BLE001 - the study may not exist yet
            continue
        running = next((t for t in trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs), None)
    assert running is not None, "the first worker never started a trial"
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(3.5)  # past the grace period: the trial's heartbeat is stale
    second = _worker(*common, cwd=tmp_path)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    study = _load("kill", storage)
    killed = study.trials[running.number]
    assert killed.state.name == "FAIL"
    retried = [t for t in study.trials if retried_from(t) == running.number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == killed.params
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2
    run = client.get_run(running.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert client.get_run(running.user_attrs["mlflow_parent_run_id"]).info.status == "KILLED"
    assert not [r for r in _trial_runs(client, "kill") if r.info.status == "RUNNING"]


def _three_workers(storage, tracking, cwd, study):
    procs = [_worker("--study-name", study, "--storage", storage, "--n-trials", "10", "--sampler", "random",
                     "--sampler-seed", str(i), *FAST, cwd=cwd, env_extra={"MLFLOW_TRACKING_URI": tracking})
             for i in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "postgres:" not in out + err or "***" in out + err  # never the password
        assert "test-secret" not in out + err and "ci-secret" not in out + err


def _assert_thirty(study_name, storage, tracking):
    import mlflow

    study = _load(study_name, storage)
    assert len(study.trials) == 30
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 30
    client = mlflow.MlflowClient(tracking)
    runs = _trial_runs(client, study_name)
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(30))
    assert all(r.info.status == "FINISHED" for r in runs)
    parents = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
               if r.data.tags.get("stage") == "sweep"]
    assert len(parents) == 3 and all(r.info.status == "FINISHED" for r in parents)
    assert all("***" in r.data.tags["storage"] for r in parents)


@pytest.mark.postgres
def test_three_workers_share_a_postgres_study(postgres_db, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _three_workers(postgres_db, tracking, tmp_path, "dist")
    _assert_thirty("dist", postgres_db, tracking)
    optuna_bin = os.path.join(os.path.dirname(sys.executable), "optuna")
    listed = subprocess.run([optuna_bin, "studies", "--storage", postgres_db], capture_output=True, text=True)
    assert listed.returncode == 0 and "dist" in listed.stdout, listed.stderr
    trials = subprocess.run([optuna_bin, "trials", "--study-name", "dist", "--storage", postgres_db, "-f", "json"],
                            capture_output=True, text=True)
    assert trials.returncode == 0 and trials.stdout.count('"COMPLETE"') == 30


@pytest.fixture
def mlflow_server(postgres_server, tmp_path):
    """An `mlflow server` on 127.0.0.1 with a PostgreSQL backend store."""
    import socket
    import urllib.request
    import uuid

    import psycopg

    name = f"mlf_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    backend = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runners needed
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", backend, "--host", "127.0.0.1",
                             "--port", str(port), "--artifacts-destination", str(tmp_path / "artifacts"),
                             "--workers", "2"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
    if proc.poll() is not None:
        pytest.fail("mlflow server exited: " + (tmp_path / "server.log").read_text()[-2000:])
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.postgres
def test_three_workers_with_an_mlflow_server(postgres_db, mlflow_server, tmp_path):
    _three_workers(postgres_db, mlflow_server, tmp_path, "served")
    _assert_thirty("served", postgres_db, mlflow_server)


def test_grid_mode_gives_exactly_the_capacity_grid(client):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig

    seeds, epochs = 24, 300
    result = sweep.run(SweepConfig(study_name="grid", sampler="grid", filters=(1, 2, 3, 4, 5, 6),
                                   kernel_sizes=(3, 5, 7), seeds=seeds, epochs=epochs, n_trials=100,
                                   progress=False), echo=lambda s: None)
    study = _load("grid", "sqlite:///optuna.db")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 18 and len(study.trials) == 18  # exhaustive, and stops when done
    assert result.counts == {"COMPLETE": 18}
    grid = capacity.run(CapacityConfig(filters=(1, 2, 3, 4, 5, 6), kernel_sizes=(3, 5, 7), seeds=seeds,
                                       epochs=epochs), echo=lambda s: None)
    expected = {(int(r.filters), int(r.kernel_size)): r for r in grid.summary.itertuples()}
    by_trial = {(t.params["filters"], t.params["kernel_size"]): t.value for t in done}
    assert set(by_trial) == set(expected)
    for key, value in by_trial.items():
        assert value == expected[key].p_success, key


def test_image_objective_on_digits_prunes_and_marks_killed(client):
    """6 trials, 6 epochs, median pruner (2 startup trials, 1 warm-up epoch), random sampler seed 0,
    filters 1,2,4,8,16 and kernels 3,5 per LeNet layer: the 1-2 filter nets fall behind and get pruned."""
    cfg = SweepConfig(objective="accuracy", dataset="digits", study_name="digits", n_trials=6, epochs=6,
                      filters=(1, 2, 4, 8, 16), kernel_sizes=(3, 5), sampler="random", progress=False,
                      pruner_startup_trials=2, pruner_warmup_epochs=1)
    result = sweep.run(cfg, echo=lambda s: None)
    study = _load("digits", "sqlite:///optuna.db")
    assert len(study.trials) == 6
    assert set(study.trials[0].params) == {"filters_1", "kernel_size_1", "filters_2", "kernel_size_2"}
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and result.counts["PRUNED"] == len(pruned)
    runs = {r.data.tags["trial_number"]: r for r in _trial_runs(client, "digits")}
    assert all(r.data.tags["model"] == "lenet" and r.data.tags["dataset"] == "digits" for r in runs.values())
    for t in pruned:
        assert runs[str(t.number)].info.status == "KILLED"
        n_steps = len(client.get_metric_history(runs[str(t.number)].info.run_id, "val_accuracy"))
        assert n_steps < 6  # stopped early
    assert 0 < study.best_value <= 1


def test_multi_objective_reports_the_pareto_front(client):
    cfg = SweepConfig(study_name="pareto", multi_objective=True, n_trials=8, seeds=8, epochs=150,
                      filters=(1, 2, 4, 8), kernel_sizes=(3, 7), sampler="random", progress=False)
    result = sweep.run(cfg, echo=lambda s: None)
    study = _load("pareto", "sqlite:///optuna.db")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = {t.number for t in study.best_trials}
    assert {b["number"] for b in result.best} == front and front
    for t in study.trials:  # the second objective is the detector's parameter count
        f, k = t.params["filters"], t.params["kernel_size"]
        assert t.values[1] == f * k + 2 * f + 1
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert "figures/pareto_front.png" in figures
    tagged = [r for r in _trial_runs(client, "pareto") if r.data.tags.get("best_trial") == "true"]
    assert len(tagged) == len(front)
    from pipeline.sweep.report import summary

    lines = summary("pareto", "sqlite:///optuna.db", top=1).splitlines()  # study-summary --top 1
    shown = [line for line in lines if line.startswith("Pareto front:")]
    best_first = max(study.best_trials, key=lambda t: (t.values[0], -t.values[1]))
    assert len(shown) == 1 and shown[0].startswith(f"Pareto front: #{best_first.number} ")
    more = f"({len(front) - 1} more trials on the Pareto front: --top {len(front)} shows them all)"
    assert (lines[-1] == more) == (len(front) > 1)


_RACE = """
import os, sys, time
import mlflow, optuna, psycopg, sqlalchemy  # imported before the start, so that the calls coincide
from pipeline.sweep.storage import make_storage
from pipeline.tracking import runs as tracking
url, which, ready = sys.argv[1], sys.argv[2], sys.argv[3]
open(ready, "w").close()
while not os.path.exists("go"):
    time.sleep(0.002)
if which == "optuna":
    make_storage(url, heartbeat_interval=None)
else:
    tracking.configure(url)
print("ok")
"""


@pytest.mark.postgres
def test_workers_creating_new_postgres_stores_at_once_do_not_race(postgres_db, tmp_path):
    # Workers on many machines start together on empty databases: whoever loses the race to
    # create Optuna's or MLflow's tables must wait for them, not fail with "relation already exists".
    # (Without the init lock, Optuna's side failed here about 1 run in 3, and MLflow's own client
    # creating its tables from 4 processes at once failed every time.)
    import psycopg

    mlflow_db = postgres_db + "_mlf"
    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {mlflow_db.rsplit('/', 1)[1]}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    jobs = [(postgres_db, "optuna")] * 4 + [(mlflow_db, "mlflow")] * 4
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, url, which, f"ready-{i}"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, (url, which) in enumerate(jobs)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(jobs):  # all imported: now they go at one moment
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert _optuna(postgres_db).get_all_study_summaries(postgres_db) == []
    import mlflow

    assert sorted(e.name for e in mlflow.MlflowClient(mlflow_db).search_experiments()) == ["Default", "convnet-study"]


def test_a_journal_storage_says_that_it_keeps_no_heartbeats(tracking_uri, tmp_path, capsys):
    journal = str(tmp_path / "s.journal")
    for name, interval in (("beats", 10), ("off", 0)):
        sweep.run(SweepConfig(study_name=name, storage=journal, heartbeat_interval=interval, n_trials=1, seeds=4,
                              epochs=20, progress=False), echo=lambda s: None)
        notes = [line for line in capsys.readouterr().err.splitlines() if "keeps no heartbeats" in line]
        assert notes == ([f"note: --storage {journal} keeps no heartbeats (Optuna's JournalStorage has none): a "
                          "worker killed mid-trial leaves its trial RUNNING; a SQLite or PostgreSQL storage fails "
                          "and retries it"] if interval else []), name
