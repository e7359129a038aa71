"""A normal `pipeline train` run, as a user starts it: a quiet terminal, a last line that says where
the results are, and a model that loads back as the nn.Module that evaluate and inspect need."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from helpers import REPO
from pipeline.models.detector import Detector1d


def test_a_normal_train_run_prints_no_warning_and_its_model_loads_back(client, tmp_path):
    import mlflow

    proc = subprocess.run([sys.executable, "-m", "pipeline", "train"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert not [ln for ln in lines if "WARNING" in ln or "Warning:" in ln], proc.stderr
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"results: run '{run.info.run_name}' {run.info.run_id} at http://127.0.0.1:5000/#/"
                           f"experiments/{run.info.experiment_id}/runs/{run.info.run_id}?"), last
    assert run.info.status == "FINISHED"

    uri = f"runs:/{run.info.run_id}/detector1d-F3-k5"
    model = mlflow.pytorch.load_model(uri)
    assert type(model) is Detector1d and not model.training  # the module itself, in eval mode, with its layers
    assert model.conv.out_channels == 3 and model.linear.in_features == 3
    X = np.random.default_rng(0).choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(8, 1, 20)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    served = mlflow.pyfunc.load_model(uri).predict(X)  # the probability of each class (tracking/serving.py)
    p = 1 / (1 + np.exp(-expected[:, 0]))
    np.testing.assert_allclose(served["probability_1"].to_numpy(), p, rtol=1e-5)
