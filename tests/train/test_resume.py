"""Checkpoints and --resume of `pipeline train`: a run stopped by a signal (between epochs or between two
minibatches) and resumed ends with every metric at every step, and the final weights, equal to those of
the same run never stopped; a FINISHED run is refused.

The signal is simulated in-process: ``check_interrupt`` (where the loop looks for a held signal) raises
``Interrupted`` on its k-th call. The slow test sends a real SIGTERM to a real process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from errorpath import error_lines, run_in_process
from helpers import REPO

SYNTHETIC = ["train", "--epochs", "30", "--filters", "4", "--seed", "0", "--image-every", "0"]
DIGITS = ["train", "--dataset", "digits", "--epochs", "3", "--seed", "0", "--dropout", "0.2", "--batch-size", "128"]


def _stop_on_check(monkeypatch, call: int) -> None:
    """The loop's ``call``-th look for a held signal finds a SIGTERM."""
    from pipeline.errors import Interrupted
    from pipeline.train import loop

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == call:
            raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(loop, "check_interrupt", check)


def _run(args, tmp_path, experiment):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PIPELINE_RESCUE_DIR": str(tmp_path)}
    return run_in_process([*args, "--experiment-name", experiment], env, tmp_path)


def _only_run(tmp_path, experiment):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def _curves(client, run):
    """Every metric's (step, value) pairs, in step order; each step at most once."""
    out = {}
    for key in client.get_run(run.info.run_id).data.metrics:
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert len({s for s, _ in points}) == len(points), f"{key}: a step logged twice"
        out[key] = points
    return out


def _weights(run):
    import mlflow

    from pipeline.tracking import artifacts

    model_name = artifacts.model_name(run.data.tags["model"], tuple(map(int, run.data.tags["filters"].split(","))),
                                      tuple(map(int, run.data.tags["kernel_size"].split(","))))
    return mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/{model_name}").state_dict()


def _interrupted_then_resumed(monkeypatch, tmp_path, args, call, experiment):
    with monkeypatch.context() as patch:
        _stop_on_check(patch, call)
        code, _, err = _run(args, tmp_path, experiment)
    lines = error_lines(err)
    assert code == 128 + signal.SIGTERM and len(lines) == 1, err[-2000:]
    client, run = _only_run(tmp_path, experiment)
    assert run.info.status == "KILLED"
    assert f"pipeline train --resume {run.info.run_id}" in lines[0]
    code, _, err = _run(["train", "--resume", run.info.run_id], tmp_path, experiment)
    assert code == 0, err[-2000:]
    client, resumed = _only_run(tmp_path, experiment)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    return client, resumed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference runs, never stopped: (curves, weights) per command."""
    import mlflow

    out = {}
    for name, args in (("synthetic", SYNTHETIC), ("digits", DIGITS)):
        tmp = tmp_path_factory.mktemp(name)
        code, _, err = _run(args, tmp, "whole")
        assert code == 0, err[-2000:]
        client, run = _only_run(tmp, "whole")
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        out[name] = (_curves(client, run), _weights(run))
    return out


def _same_as(reference, client, run):
    import mlflow
    import torch

    curves, weights = reference
    assert _curves(client, run) == curves  # every metric, every step, exactly
    mlflow.set_tracking_uri(client.tracking_uri)
    got = _weights(run)
    assert all(torch.equal(got[k], weights[k]) for k in weights)


@pytest.mark.parametrize("call", [1, 13, 29])  # after epoch 1, 13, 29 of 30 (full batch: one look per epoch)
def test_the_detector_resumed_between_epochs_is_the_run_never_stopped(monkeypatch, tmp_path, uninterrupted, call):
    client, run = _interrupted_then_resumed(monkeypatch, tmp_path, SYNTHETIC, call, f"det{call}")
    assert [s for s, _ in _curves(client, run)["train_loss"]] == list(range(1, 31))
    _same_as(uninterrupted["synthetic"], client, run)


# digits: 1294 training rows in batches of 128 = 11 minibatches, then one look at the epoch's end: 12 per epoch
@pytest.mark.parametrize("call", [4, 12, 18])  # inside epoch 1, at its end, inside epoch 2
def test_digits_with_dropout_resumed_mid_epoch_is_the_run_never_stopped(monkeypatch, tmp_path, uninterrupted, call):
    client, run = _interrupted_then_resumed(monkeypatch, tmp_path, DIGITS, call, f"digits{call}")
    _same_as(uninterrupted["digits"], client, run)


def test_a_scheduled_checkpoint_is_logged_and_a_finished_run_is_refused(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # given on the command line, where a password may be
    code, _, err = _run(["train", "--epochs", "6", "--image-every", "0", "--checkpoint-every", "2",
                         "--tracking-uri", uri], tmp_path, "every")
    assert code == 0, err[-2000:]
    client, run = _only_run(tmp_path, "every")
    assert [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.pt"]
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="checkpoints/last.pt",
                                               tracking_uri=client.tracking_uri, dst_path=str(tmp_path / "dl"))
    import torch

    state = torch.load(path, weights_only=False)
    assert state["epoch"] == 4  # the last one due before the end (2, 4)
    assert state["config"].tracking_uri is None and uri.encode() not in open(path, "rb").read()  # resume gives its own
    code, _, err = _run(["train", "--resume", run.info.run_id], tmp_path, "every")
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "FINISHED" in lines[0], err[-2000:]


@pytest.mark.parametrize("every", ["0", "10x", "-3", "m"])
def test_a_bad_checkpoint_schedule_is_one_line(tmp_path, every):
    code, _, err = _run(["train", "--epochs", "1", "--checkpoint-every", every], tmp_path, "bad")
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "--checkpoint-every" in lines[0], err


@pytest.mark.slow
def test_sigterm_to_a_real_train_exits_within_5_s_and_resumes(tmp_path):
    """A real process, SIGTERM while it trains and buffers metrics: 143 within 5 s, then resumed to the end."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    args = [sys.executable, "-m", "pipeline", "train", "--epochs", "10000", "--filters", "4", "--seed", "0",
            "--print-every", "1"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # training has begun once epoch 1 is printed
        if line.startswith("Epoch 1 "):
            break
    time.sleep(5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and time.monotonic() - sent < 5, (proc.returncode, time.monotonic() - sent)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("convnet-study").experiment_id])
    assert run.info.status == "KILLED" and f"--resume {run.info.run_id}" in error_lines(err)[0]
    done = subprocess.run([*args[:4], "--resume", run.info.run_id], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, 10001))
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_image_capacity_stopped_in_its_second_cell_resumes_to_the_same_tables(monkeypatch, tmp_path):
    """The finished cell is kept (its child run is not logged twice), the stopped one trained again."""
    import pandas as pd

    from pipeline.capacity.images import stage
    from pipeline.errors import Interrupted

    args = ["capacity", "--dataset", "digits", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3",
            "--epochs", "2", "--dropout", "0.2", "--max-batches", "4"]  # --strategy auto: a rule on the CPU
    (tmp_path / "whole").mkdir()
    code, _, err = _run(args, tmp_path / "whole", "whole")
    assert code == 0, err[-2000:]
    real, calls = stage.run_cell, []

    def stop_in_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted(signal.SIGTERM)
        return real(*a, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(stage, "run_cell", stop_in_second)
        code, _, err = _run(args, tmp_path, "cap")
    assert code == 143 and "pipeline capacity --resume" in error_lines(err)[0], err[-2000:]
    parent_id = error_lines(err)[0].split("--resume ")[1].rstrip("`")
    code, _, err = _run(["capacity", "--resume", parent_id, "--filters", "7", "--seeds", "3"], tmp_path, "cap")
    assert code == 2 and error_lines(err) == [  # another grid is refused; the same seeds are no change
        "Error: --filters 7: --resume continues the run with the settings it started with (filters 1,2); drop them, "
        "or start a new run without --resume"], err[-2000:]
    code, _, err = _run([*args, "--resume", parent_id, "--table", "seeds.csv"], tmp_path, "cap")  # a job script's rerun
    assert code == 0, err[-2000:]
    assert len(pd.read_csv(tmp_path / "seeds.csv")) == 6  # a setting of how it runs: taken from the command
    import mlflow

    tables = []
    for folder, experiment in ((tmp_path / "whole", "whole"), (tmp_path, "cap")):
        client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert [r.info.status for r in parents] == ["FINISHED"] and len(runs) == 3  # one child per cell
        path = mlflow.artifacts.download_artifacts(run_id=parents[0].info.run_id, artifact_path="tables/curves.csv",
                                                   tracking_uri=client.tracking_uri, dst_path=str(folder / "dl"))
        tables.append(pd.read_csv(path))
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
