"""Logged models as a user serves them: named after what they are, with a signature and an input
example, registered on request, answering with class probabilities; `make serve RUN=<id>` works."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch

from helpers import REPO, free_port, wait_for_url
from test_readme import blocks
from pipeline.config.stages import TrainConfig
from pipeline.data.synthetic import make_synthetic
from pipeline.train import stage as train


def _probabilities(table) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("probability_")]].to_numpy()


def test_the_detector_answers_with_probabilities_and_is_registered(client):
    import mlflow

    result = train.run(TrainConfig(filters=(4,), epochs=40, image_every=0, register_model="detector"),
                       echo=lambda s: None)
    assert result.model_uri == f"runs:/{result.run_id}/detector1d-F4-k5"
    X, _ = make_synthetic(6, 20, 7)
    served = mlflow.pyfunc.load_model(result.model_uri)
    table = served.predict(X.numpy())
    probs = _probabilities(table)
    with torch.no_grad():
        p = torch.sigmoid(result.model(X)).numpy()[:, 0]
    assert probs.shape == (6, 2) and np.allclose(probs.sum(axis=1), 1) and np.allclose(probs[:, 1], p, atol=1e-6)
    assert list(table["predicted_class"]) == list((p > 0.5).astype(int))
    assert set(table["predicted_label"]) <= {"no pattern", "0,+1,0"}
    signature = served.metadata.signature
    assert signature.inputs.inputs[0].shape == (-1, 1, 20)
    assert [c.name for c in signature.outputs.inputs][-2:] == ["predicted_class", "predicted_label"]
    assert served.metadata.load_input_example(mlflow.artifacts.download_artifacts(result.model_uri)) is not None
    module = mlflow.pytorch.load_model(result.model_uri)  # evaluate and inspect need the module, layers and all
    assert isinstance(module, torch.nn.Module) and module.conv.out_channels == 4
    (version,) = client.search_model_versions("name = 'detector'")
    assert version.run_id == result.run_id


def test_an_image_model_answers_with_ten_probabilities(client):
    import mlflow

    result = train.run(TrainConfig(dataset="digits", epochs=1, max_batches=2, image_every=0), echo=lambda s: None)
    assert result.model_uri.endswith("/lenet-F6-16-k5-5")
    table = mlflow.pyfunc.load_model(result.model_uri).predict(np.zeros((3, 1, 8, 8), np.float32))
    assert _probabilities(table).shape == (3, 10) and np.allclose(_probabilities(table).sum(axis=1), 1)
    assert set(table["predicted_label"]) <= {str(d) for d in range(10)}


@pytest.mark.slow
def test_the_readmes_make_serve_and_curl(tracking_uri, tmp_path):
    """The README's `serve` block: the command that `make serve RUN=<id>` runs, then its `curl`."""
    make_line, curl_line = blocks("serve")
    assert make_line == "make serve RUN=<train run id>" and curl_line.startswith("curl ")
    result = train.run(TrainConfig(filters=(4,), epochs=300, image_every=0), echo=lambda s: None)
    port = free_port()
    dry = subprocess.run([*make_line.replace("<train run id>", result.run_id).split(), "-s", "-n", "-C", str(REPO),
                          f"PORT={port}", f"VENV={REPO / '.venv'}"],
                         capture_output=True, text=True)  # -n prints the recipe and runs nothing (not `setup`)
    assert dry.returncode == 0, dry.stderr
    command = dry.stdout.strip().splitlines()[-1]
    assert f"-m pipeline serve --run-id {result.run_id} --port {port}" in command
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}  # no virtualenv on PATH: still serves
    server = subprocess.Popen(command, shell=True, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/ping", server, timeout_s=180, what="`make serve`")
        curl = subprocess.run(curl_line.replace("127.0.0.1:5001", f"127.0.0.1:{port}"), shell=True,
                              capture_output=True, text=True, timeout=60)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert curl.returncode == 0, curl.stderr
    (row,) = json.loads(curl.stdout)["predictions"]  # the README's input: one row with the pattern 0, +1, 0
    assert row["probability_0"] + row["probability_1"] == pytest.approx(1)
    assert row["predicted_class"] == 1 and row["predicted_label"] == "0,+1,0" and row["probability_1"] > 0.9
