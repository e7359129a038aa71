"""Signals end runs honestly: SIGINT, SIGTERM and SIGHUP end the active runs KILLED, fail the
sweep's current trial (which the next worker retries), keep the metrics computed so far (a train
run also a checkpoint that ``--resume`` continues: tests/train/test_resume.py), and exit 128 + N
with one line and no traceback.

In-process, each stage sends the signal to itself at a chosen point (deterministic); the slow
test sends SIGTERM and SIGHUP to real train, capacity and sweep processes from outside.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from errorpath import error_lines, run_in_process, running_runs
from helpers import REPO, new_store, retried_from

LONG_TRIAL = ["--seeds", "256", "--epochs", "6000", "--filters", "2,3", "--kernel-sizes", "3", "--sampler", "grid",
              "--progress", "false"]


def _runs(world, experiment):
    import mlflow

    client = mlflow.MlflowClient(world.uri)
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def _one_line(code, err, signum):
    lines = error_lines(err)
    assert code == 128 + signum and "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0], lines


def _signal_on_call(monkeypatch, module, name, signum, on_call=1, when=lambda *a, **kw: True, after=False):
    """Make ``module.name`` send ``signum`` to this process on its ``on_call``-th call for which ``when`` holds
    (``after``: once that call has returned its result, before the caller has it)."""
    real, calls = getattr(module, name), []

    def send():
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the handler runs in here, as it would in the middle of real work

    def wrapped(*args, **kwargs):
        calls.append(1) if when(*args, **kwargs) else None
        if len(calls) == on_call and when(*args, **kwargs) and not after:
            send()
        result = real(*args, **kwargs)
        if len(calls) == on_call and when(*args, **kwargs) and after:
            send()
        return result

    monkeypatch.setattr(module, name, wrapped)


def test_sigterm_ends_a_train_killed_with_its_metrics(error_world, monkeypatch):
    from pipeline.tracking.metrics import MetricBuffer

    world, _ = error_world
    _signal_on_call(monkeypatch, MetricBuffer, "log", signal.SIGTERM,
                    when=lambda self, metrics, step: step == 4)  # as epoch 4 is logged
    code, _, err = run_in_process(["train", "--epochs", "50", "--image-every", "0", "--experiment-name", "sigterm"],
                                  {"MLFLOW_TRACKING_URI": world.uri}, world.root)
    _one_line(code, err, signal.SIGTERM)
    client, (run,) = _runs(world, "sigterm")
    assert run.info.status == "KILLED" and f"pipeline train --resume {run.info.run_id}" in err
    # the loop stops where its state is whole, after the epoch in progress: a checkpoint continues from there
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI put the handlers back


def test_sighup_ends_a_capacity_grid_killed(error_world, monkeypatch):
    """The signal comes as the second configuration's child is about to be logged (the grid trains ahead in a
    thread of its own, ``capacity/ahead.py``): the first configuration's child is kept, FINISHED."""
    from pipeline.capacity import stage

    world, _ = error_world
    _signal_on_call(monkeypatch, stage, "_log_child", signal.SIGHUP, on_call=2)
    code, _, err = run_in_process(["capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3", "--epochs",
                                   "10", "--experiment-name", "sighup"], {"MLFLOW_TRACKING_URI": world.uri}, world.root)
    _one_line(code, err, signal.SIGHUP)
    _, runs = _runs(world, "sighup")
    parent = [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [(r.data.tags["filters"], r.info.status) for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent == ["KILLED"] and children == [("1", "FINISHED")]  # the configuration done before the signal


def test_a_signal_while_the_grid_trains_in_its_thread_ends_the_stage_in_one_line(error_world, monkeypatch):
    """Sent from the training thread (wherever the stage's own thread then is: opening the store, the parent or
    a child), the signal ends the stage with 128 + N and one line, and leaves no run RUNNING."""
    from pipeline.capacity import stage

    world, _ = error_world
    _signal_on_call(monkeypatch, stage, "seed_table", signal.SIGTERM, on_call=2)
    code, _, err = run_in_process(["capacity", "--filters", "1,2,3", "--kernel-sizes", "3", "--seeds", "3",
                                   "--epochs", "10", "--experiment-name", "sigterm-ahead"],
                                  {"MLFLOW_TRACKING_URI": world.uri}, world.root)
    _one_line(code, err, signal.SIGTERM)
    assert not running_runs(world.uri)


def test_ctrl_c_on_a_sweep_fails_the_trial_and_the_next_worker_retries_it(error_world, monkeypatch, tmp_path):
    import optuna

    from pipeline.capacity import outcomes

    world, _ = error_world
    storage = f"sqlite:///{tmp_path / 'sigint.db'}"
    args = ["sweep", "--study-name", "sigint", "--storage", storage, "--seeds", "4", "--epochs", "20",
            "--filters", "2,3", "--kernel-sizes", "3", "--sampler", "grid", "--progress", "false",
            "--experiment-name", "sigint"]
    with monkeypatch.context() as patch:  # the success objective looks seed_table up when it is made
        _signal_on_call(patch, outcomes, "seed_table", signal.SIGINT)
        code, _, err = run_in_process(args, {"MLFLOW_TRACKING_URI": world.uri}, world.root)
    _one_line(code, err, signal.SIGINT)  # not Optuna's 30-line KeyboardInterrupt traceback
    study = optuna.load_study(study_name="sigint", storage=storage)
    (failed, waiting) = study.trials
    assert failed.state.name == "FAIL" and waiting.state.name == "WAITING"
    assert waiting.params == failed.params and retried_from(waiting) == failed.number
    assert not running_runs(world.uri)
    _, runs = _runs(world, "sigint")
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]  # the worker's parent and the trial
    code, _, err = run_in_process(args, {"MLFLOW_TRACKING_URI": world.uri}, world.root)  # the next worker
    assert code == 0, err
    study = optuna.load_study(study_name="sigint", storage=storage)
    assert study.trials[1].state.name == "COMPLETE" and study.trials[1].params == failed.params
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2


def _statuses(uri):
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return sorted((r.data.tags.get("mlflow.runName", "").split(" ")[0], r.info.status) for r in runs)


def test_a_signal_as_a_stage_run_is_created_ends_it_killed(monkeypatch, tmp_path):
    """The signal comes after the store made the run and before ``stage_run`` holds it: held until it does."""
    from pipeline.tracking import runs

    uri = new_store(tmp_path)
    _signal_on_call(monkeypatch, runs, "_start", signal.SIGTERM, after=True)
    code, _, err = run_in_process(["train", "--epochs", "5", "--image-every", "0"], {"MLFLOW_TRACKING_URI": uri},
                                  tmp_path)
    _one_line(code, err, signal.SIGTERM)
    assert _statuses(uri) == [("train", "KILLED")]


def test_a_signal_as_a_child_run_is_created_ends_it_killed(monkeypatch, tmp_path):
    """The same while a capacity grid creates its second configuration's child run."""
    from pipeline.tracking import studies

    uri = new_store(tmp_path)
    _signal_on_call(monkeypatch, studies, "_create_child", signal.SIGHUP, on_call=2, after=True)
    code, _, err = run_in_process(["capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3",
                                   "--epochs", "10"], {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    _one_line(code, err, signal.SIGHUP)
    assert _statuses(uri) == [("capacity", "FINISHED"), ("capacity", "KILLED"), ("capacity", "KILLED")]


def test_a_signal_as_a_trials_run_is_created_ends_it_killed(monkeypatch, tmp_path):
    """The same while a sweep creates its first trial's run: the trial is failed (retried by the next worker)."""
    from pipeline.tracking import sweeps

    uri = new_store(tmp_path)
    _signal_on_call(monkeypatch, sweeps, "create_child_run", signal.SIGINT, after=True)
    code, _, err = run_in_process(["sweep", "--study-name", "held", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                                   "--seeds", "4", "--epochs", "20", "--filters", "2,3", "--kernel-sizes", "3",
                                   "--sampler", "grid", "--progress", "false"], {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    _one_line(code, err, signal.SIGINT)
    assert _statuses(uri) == [("sweep", "KILLED"), ("trial", "KILLED")]


def test_guarded_holds_a_signal_outside_its_released_part():
    """``errors.guarded``: held where the block makes and ends its run, raised once the block ends (or as its
    released part begins), in place of an error that is not a signal, or kept in ``into`` for the caller."""
    from pipeline.errors import (Interrupted, check_interrupt, deferred_interrupts, guarded, interrupt_pending,
                                 interrupt_signals)

    steps = []
    with interrupt_signals(), pytest.raises(Interrupted):
        with guarded():
            signal.raise_signal(signal.SIGTERM)
            steps.append(interrupt_pending())  # a guard's signal does not cut metrics short
    with interrupt_signals(), pytest.raises(Interrupted), guarded() as guard:
        signal.raise_signal(signal.SIGHUP)
        steps.append("made")
        with guard.released():
            steps.append("worked")
    with interrupt_signals(), pytest.raises(Interrupted) as raised, guarded():
        signal.raise_signal(signal.SIGTERM)
        raise ValueError("an error that a sweep catches")
    assert isinstance(raised.value.__context__, ValueError)
    later: list[int] = []
    with interrupt_signals(), guarded(into=later):
        signal.raise_signal(signal.SIGTERM)
    with interrupt_signals(), deferred_interrupts(), guarded() as guard, guard.released():
        signal.raise_signal(signal.SIGTERM)  # a checkpointing loop inside: it holds the signal itself
        steps.append(interrupt_pending())
        with pytest.raises(Interrupted):
            check_interrupt()
    assert steps == [False, "made", True] and later == [signal.SIGTERM]


def _finished(*args, **kwargs) -> bool:  # a call that ends a run FINISHED: end_run(status=...), set_terminated(id, st)
    return "FINISHED" in args or kwargs.get("status") == "FINISHED"


def test_a_signal_as_a_stage_run_is_ended_keeps_its_end_and_then_stops(monkeypatch, tmp_path):
    """The signal comes inside the call that ends ``main``'s first nested run (prepare-data) FINISHED: held until
    it returns, then the study stops with 128 + N. (It had left that run the active one, so ``main`` ended it
    KILLED in place of its own run, which MLflow's exit hook then ended FINISHED.)"""
    import mlflow

    uri = new_store(tmp_path)
    _signal_on_call(monkeypatch, mlflow, "end_run", signal.SIGTERM, when=_finished)
    code, _, err = run_in_process(["main"], {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    _one_line(code, err, signal.SIGTERM)
    assert _statuses(uri) == [("main", "KILLED"), ("prepare-data", "FINISHED")]


def test_a_signal_as_a_child_run_is_ended_keeps_it_and_kills_the_parent(monkeypatch, tmp_path):
    """The same as a capacity grid ends its first configuration's child: that child is FINISHED, the stage
    stops before the next, and its parent run is KILLED."""
    import mlflow

    uri = new_store(tmp_path)
    _signal_on_call(monkeypatch, mlflow.MlflowClient, "set_terminated", signal.SIGHUP, when=_finished)
    code, _, err = run_in_process(["capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3",
                                   "--epochs", "10"], {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    _one_line(code, err, signal.SIGHUP)
    assert _statuses(uri) == [("capacity", "FINISHED"), ("capacity", "KILLED")]


def test_a_signal_as_a_trials_run_is_ended_completes_the_trial_and_stops_the_sweep(monkeypatch, tmp_path):
    """The same as a sweep ends its first trial's run: the trial is COMPLETE (its run FINISHED), not FAIL, and
    the sweep stops before the next trial."""
    import optuna

    from pipeline.tracking import sweeps

    uri, storage = new_store(tmp_path), f"sqlite:///{tmp_path / 'o.db'}"
    _signal_on_call(monkeypatch, sweeps, "end_run", signal.SIGTERM, when=lambda *a: a[2] == "FINISHED")
    code, _, err = run_in_process(["sweep", "--study-name", "ending", "--storage", storage, "--seeds", "4",
                                   "--epochs", "20", "--filters", "2,3", "--kernel-sizes", "3", "--sampler", "grid",
                                   "--progress", "false"], {"MLFLOW_TRACKING_URI": uri}, tmp_path)
    _one_line(code, err, signal.SIGTERM)
    assert _statuses(uri) == [("sweep", "KILLED"), ("trial", "FINISHED")]
    assert [t.state.name for t in optuna.load_study(study_name="ending", storage=storage).trials] == ["COMPLETE"]


def _start(args, cwd, uri):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_signals_sent_to_real_processes(tmp_path):
    """SIGTERM and SIGHUP to a train, a capacity grid and a sweep worker mid-trial, all at once."""
    import mlflow
    import optuna

    uri = new_store(tmp_path)  # its own: a run it leaves RUNNING fails this test, not the tests after it
    client = mlflow.MlflowClient(uri)
    jobs = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        name = sig.name.lower()
        jobs[("train", sig)] = ["train", "--epochs", "100000000", "--image-every", "0", "--experiment-name",
                                f"real-train-{name}"]
        jobs[("capacity", sig)] = ["capacity", "--seeds", "256", "--epochs", "4000", "--experiment-name",
                                   f"real-capacity-{name}"]
        jobs[("sweep", sig)] = ["sweep", "--study-name", name, "--storage", f"sqlite:///{tmp_path / name}.db",
                                *LONG_TRIAL, "--experiment-name", f"real-sweep-{name}"]
    procs = {key: _start(args, tmp_path, uri) for key, args in jobs.items()}

    def busy(key) -> bool:  # in the middle of its work: a run with metrics, a finished child, a running trial
        stage, sig = key
        if stage == "sweep":
            try:
                trials = optuna.load_study(study_name=sig.name.lower(),
                                           storage=f"sqlite:///{tmp_path / sig.name.lower()}.db").trials
            except Exception:  # noqa: BLE001 - not created yet
                return False
            return any(t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in trials)
        exp = client.get_experiment_by_name(jobs[key][-1])
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if stage == "capacity":
            return any(r.info.status == "FINISHED" for r in runs)
        return any(client.get_metric_history(r.info.run_id, "train_loss") for r in runs)

    deadline, pending = time.monotonic() + 300, set(procs)
    while pending:
        for key in list(pending):
            assert procs[key].poll() is None, (key, procs[key].stderr.read())
            if busy(key):
                procs[key].send_signal(key[1])
                pending.discard(key)
        assert time.monotonic() < deadline, f"never busy: {pending}"
        time.sleep(0.3)
    for key, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        _one_line(proc.returncode, err, key[1])
    assert not running_runs(uri)
    retries = {}  # the next worker of each study, both at once
    for sig in (signal.SIGTERM, signal.SIGHUP):
        name = sig.name.lower()
        storage = f"sqlite:///{tmp_path / name}.db"
        failed = next(t for t in optuna.load_study(study_name=name, storage=storage).trials if t.state.name == "FAIL")
        retries[name] = (storage, failed, _start(["sweep", "--study-name", name, "--storage", storage, *LONG_TRIAL,
                                                  "--n-trials", "1", "--experiment-name", f"real-sweep-{name}"],
                                                 tmp_path, uri))
    for name, (storage, failed, retry) in retries.items():
        _, err = retry.communicate(timeout=300)
        assert retry.returncode == 0, err[-2000:]
        retried = [t for t in optuna.load_study(study_name=name, storage=storage).trials
                   if retried_from(t) == failed.number]
        assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == failed.params
    assert not running_runs(uri)
