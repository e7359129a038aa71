"""Best-effort steps of a sweep that fail say so in one line, with the command that does the step by hand.

Each test makes the step fail (the call monkeypatched to raise), checks the line and the stage's
exit status, then runs the printed command and checks that it does what the stage could not.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from errorpath import run_in_process
from helpers import REPO

ARGS = ["sweep", "--study-name", "s", "--n-trials", "2", "--filters", "2,3", "--kernel-sizes", "3",
        "--progress", "false", "--heartbeat-interval", "0"]


def _interrupting_objective(cfg):
    from pipeline.errors import Interrupted

    def objective(trial, run, point):
        raise Interrupted(signal.SIGTERM)  # what a signal looks like inside a trial
    return objective


def _sweep(tmp_path, monkeypatch):
    from pipeline.sweep import stage

    monkeypatch.setattr(stage, "default_objective", _interrupting_objective)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    code, _, err = run_in_process([*ARGS, "--storage", storage], env, tmp_path)
    return code, err, storage


def _run_printed(command: str) -> None:
    """Run a ``python -c "..."`` command that the stage printed, with this interpreter and this checkout."""
    assert command.startswith("python -c "), command
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(f"{sys.executable} {command[len('python '):]}", shell=True, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _waiting_with_params_of(storage, number):
    import optuna

    study = optuna.load_study(study_name="s", storage=storage)
    failed = study.trials[number]
    assert failed.state.name == "FAIL"
    return [t for t in study.trials if t.state.name == "WAITING" and t.params == failed.params]


def test_an_interrupted_trial_is_queued_again(tmp_path, monkeypatch):
    code, err, storage = _sweep(tmp_path, monkeypatch)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "not queued again" not in err
    assert len(_waiting_with_params_of(storage, 0)) == 1


def test_a_requeue_that_fails_says_how_to_requeue(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pipeline.sweep import study

    def broken(max_retry):
        def retry(study, trial):
            raise OperationalError("INSERT INTO trials", {}, Exception("disk I/O error"))
        return retry

    monkeypatch.setattr(study, "_retry_callback", broken)
    code, err, storage = _sweep(tmp_path, monkeypatch)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err  # the stage still fails as the signal says
    lines = [ln for ln in err.splitlines() if "not queued again" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("sweep: trial 0 was not queued again (") and "disk I/O error" in lines[0]
    assert _waiting_with_params_of(storage, 0) == []  # nothing was queued
    monkeypatch.undo()
    _run_printed(lines[0].split("queue it with: ", 1)[1])
    assert len(_waiting_with_params_of(storage, 0)) == 1


@pytest.mark.parametrize("broken", [False, True], ids=["ends", "cannot-end"])
def test_a_dead_trials_run_is_ended_or_says_how(broken, tracking_uri, monkeypatch, capsys):
    from types import SimpleNamespace

    from pipeline.sweep.trials import close_stale_runs
    from pipeline.tracking import sweeps

    client = sweeps.client(tracking_uri)
    run_id = client.create_run(client.create_experiment("dead")).info.run_id
    if broken:
        def unreachable(uri, run_id, reason):
            raise ConnectionError("tracking server at 127.0.0.1:5000 does not answer")
        monkeypatch.setattr(sweeps, "kill_if_running", unreachable)
    capsys.readouterr()  # MLflow's own lines about creating the store
    close_stale_runs(tracking_uri, SimpleNamespace(number=4, user_attrs={"mlflow_run_id": run_id}))
    err = capsys.readouterr().err
    if not broken:
        assert err == "" and client.get_run(run_id).info.status == "KILLED"
        return
    assert client.get_run(run_id).info.status == "RUNNING"
    (line,) = err.splitlines()
    assert line.startswith(f"sweep: run {run_id} of dead trial 4 was not ended KILLED (") and "does not answer" in line
    _run_printed(line.split("end it with: ", 1)[1])
    assert client.get_run(run_id).info.status == "KILLED"
