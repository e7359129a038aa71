"""The CLI: one-line errors for bad input, and `mlflow run` entry points end to end."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, run_cli

BAD_INPUT = [
    (["train", "--kernel-size", "4"], "odd"),
    (["train", "--filters", "0"], "positive"),
    (["train", "--filters", "three"], "integer list"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--recipe", "nope"], "unknown recipe"),
    (["train", "--dataset", "nope"], "unknown dataset"),
    (["train", "--device", "tpu"], "--device"),
    (["train", "--data-uri", "runs:/0123456789abcdef/data"], "--data-uri"),
    (["prepare-data", "--n", "0"], "--n"),
    (["evaluate"], "--model-uri"),
    (["evaluate", "--run-id", "0123456789abcdef"], "cannot load model"),
    (["main", "--epochs", "x"], "--epochs"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_error(args, needle, tracking_uri):
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and "INFO" not in ln and "WARNING" not in ln]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert needle in lines[0]


UNREACHABLE_STORES = [  # (URI, exit status): a server that does not answer is the environment (1), a path bad input (2)
    ("postgresql://alice:s3cr3t-pw@127.0.0.1:1/nodb", 1),
    ("http://alice:s3cr3t-pw@127.0.0.1:1", 1),
    ("sqlite:////proc/no-such-dir/mlflow.db", 2),
]


@pytest.mark.parametrize("uri,status", UNREACHABLE_STORES)
def test_unreachable_tracking_store_fails_fast_in_one_line(uri, status, tmp_path):
    # MLflow alone retries an HTTP store for minutes and then prints a traceback.
    t0 = time.monotonic()
    code, out, err = run_cli("train", "--tracking-uri", uri, "--epochs", "5")
    assert time.monotonic() - t0 < 60
    assert code == status and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot open the MLflow tracking store"), err
    assert "s3cr3t-pw" not in out + err


def test_a_tracking_server_that_refuses_requests_is_one_line(tmp_path):
    # It answers /health but not MLflow's API (a wrong port, a half-configured proxy).
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, out, err = run_cli("train", "--tracking-uri", f"http://127.0.0.1:{server.server_port}",
                                 "--epochs", "5")
    finally:
        server.shutdown()
    assert code == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: MLflow: ") and "404" in lines[0], err


def test_help_names_what_stages_read_and_write():
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    for opt in ("--filters", "--kernel-size", "--lr", "--momentum", "--weight-decay", "--epochs", "--seed",
                "--tracking-uri", "--experiment-name", "--recipe", "--image-every", "--data-uri"):
        assert opt in out, opt
    assert "runs:/<id>/detector1d-F4-k5" in out


def test_python_dash_m_and_console_script_agree():
    code, out, _ = run_cli("recipes")
    assert code == 0 and "synthetic" in out


def test_mlflow_run_train_with_another_spelling_of_lr(tmp_path):
    """`mlflow run -P lr=5e-2` logs '5e-2' first; our '0.05' must not clash with it."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow"), "run", str(REPO), "--env-manager",
         "local", "-e", "train", "-P", "filters=4", "-P", "lr=5e-2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "5e-2" and run.data.params["filters"] == "4"
    assert "resolved.lr" not in run.data.params
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 500
    assert "Epoch 500 had training loss" in proc.stdout
