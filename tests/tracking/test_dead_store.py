"""Training is not lost when tracking fails.

When the tracking store stops answering (a failed call, or the watch on a remote store in the
middle of an epoch), the stage writes what it had not logged (config, per-epoch metrics, the
model's state dict, tables) to a local folder, prints the folder in its one error line and
exits 1. The slow test kills a real ``mlflow server`` mid-train and times the exit.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from errorpath import error_lines, run_in_process
from helpers import REPO


def _rescue_folder(err: str):
    from pathlib import Path

    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    match = re.search(r"saved in (\S+)$", lines[0])
    assert match, lines[0]
    return Path(match.group(1))


def _model_from(folder):
    """The model that the saved config describes, with the saved weights loaded into it."""
    import torch

    from pipeline.config.parsing import build_config
    from pipeline.config.stages import TrainConfig
    from pipeline.data.load import load_bundle
    from pipeline.train.stage import make_model

    values = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if v is not None}
    cfg = build_config(TrainConfig, values)
    model = make_model(cfg, load_bundle(cfg))
    model.load_state_dict(torch.load(folder / "model_state_dict.pt"))
    return model, cfg


@pytest.fixture
def failing_metrics(monkeypatch):
    """MLflow's log_batch fails like a dead server once metrics are sent (params still go through)."""
    import mlflow
    import requests

    real = mlflow.MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kw):
        if metrics:
            raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch)


def test_train_saves_its_model_and_metrics_when_logging_fails(error_world, failing_metrics, tmp_path):
    import torch

    world, before = error_world
    code, _, err = run_in_process(["train", "--epochs", "7", "--image-every", "0", "--experiment-name", "lost"],
                                  {"MLFLOW_TRACKING_URI": world.uri, "PIPELINE_RESCUE_DIR": str(tmp_path)}, world.root)
    assert code == 1 and "stopped answering" in err
    folder = _rescue_folder(err)
    assert folder.parent == tmp_path and (folder / "README.txt").is_file()
    epochs = json.loads((folder / "metrics.json").read_text())
    assert [e["epoch"] for e in epochs] == list(range(1, 8)) and "val_accuracy" in epochs[0]
    model, cfg = _model_from(folder)
    assert cfg.epochs == 7 and model.conv.weight.shape == (3, 1, 5)
    assert torch.isfinite(model.conv.weight).all()


def test_capacity_saves_its_tables_when_logging_fails(error_world, failing_metrics, tmp_path):
    import pandas as pd

    world, _ = error_world
    code, _, err = run_in_process(["capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3", "--epochs",
                                   "20", "--experiment-name", "lost"],
                                  {"MLFLOW_TRACKING_URI": world.uri, "PIPELINE_RESCUE_DIR": str(tmp_path)}, world.root)
    assert code == 1
    seeds = pd.read_csv(_rescue_folder(err) / "seeds.csv")
    # every configuration trained when the store went away (the grid trains ahead of its logging: the first, or both)
    assert list(seeds["filters"]) in ([1, 1, 1], [1, 1, 1, 2, 2, 2]), seeds
    assert list(seeds["seed"]) == [0, 1, 2] * (len(seeds) // 3)


def test_the_watch_stops_a_long_epoch_within_seconds(error_world, monkeypatch, tmp_path):
    """A remote store that stops answering is noticed between tracking calls too."""
    from pipeline.tracking import watch

    world, _ = error_world
    monkeypatch.setattr(watch, "EVERY_S", 0.2)
    started = time.monotonic()
    monkeypatch.setattr(watch, "probe_for", lambda uri: lambda: "no answer" if time.monotonic() - started > 3 else None)
    code, _, err = run_in_process(["train", "--epochs", "100000000", "--image-every", "0", "--experiment-name", "lost"],
                                  {"MLFLOW_TRACKING_URI": world.uri, "PIPELINE_RESCUE_DIR": str(tmp_path)}, world.root)
    assert code == 1 and time.monotonic() - started < 30, err
    folder = _rescue_folder(err)
    assert json.loads((folder / "metrics.json").read_text())  # the epochs done before the store went away
    _model_from(folder)


def test_http_retries_are_bounded():
    from pipeline.tracking.connect import HTTP_RETRIES

    tries = int(HTTP_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1
    backoff = sum(int(HTTP_RETRIES["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]) * 2 ** (i - 1) for i in range(2, tries))
    assert tries * int(HTTP_RETRIES["MLFLOW_HTTP_REQUEST_TIMEOUT"]) + backoff <= 20  # a hung server, at worst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_killed_mlflow_server_mid_train(tmp_path):
    import torch

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        env.pop(key, None)
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
                               str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        train = subprocess.Popen([sys.executable, "-m", "pipeline", "train", "--tracking-uri", f"http://127.0.0.1:{port}",
                                  "--dataset", "digits", "--epochs", "100000", "--threads", "1"], cwd=tmp_path,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import mlflow

        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        while not any(client.get_metric_history(r.info.run_id, "train_loss")
                      for r in client.search_runs([e.experiment_id for e in client.search_experiments()])):
            if train.poll() is not None or time.monotonic() > deadline + 120:
                train.kill()
                pytest.fail(f"train logged no epoch (exit {train.poll()}): {train.communicate()[1][-2000:]}")
            time.sleep(1)  # training and logging: the server dies in the middle of it
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    killed = time.monotonic()
    out, err = train.communicate(timeout=120)
    seconds = time.monotonic() - killed
    print(f"train exited {seconds:.1f} s after the server was killed")
    assert train.returncode == 1 and seconds <= 30, err[-2000:]
    folder = _rescue_folder(err)
    if not folder.is_absolute():
        folder = tmp_path / folder
    model, cfg = _model_from(folder)  # the trained weights load into the model that config.json describes
    assert cfg.dataset == "digits" and model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert json.loads((folder / "metrics.json").read_text())[0]["epoch"] == 1
