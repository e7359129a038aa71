"""The model is logged with its requirements written out and still checked, without MLflow's scan of every package."""
from __future__ import annotations

import logging
from importlib.metadata import version

import pytest
import torch

from pipeline.models.registry import build_model
from pipeline.tracking import artifacts, runs


@pytest.fixture
def unscanned(monkeypatch):
    """MLflow's module-to-distribution map not built yet (as in a fresh process); building it fails the test."""
    from mlflow.utils import requirements_utils

    def scan():
        raise AssertionError("MLflow scanned every installed distribution")

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", scan)
    return requirements_utils


def _log() -> str:
    model = build_model("detector1d", (1, 20), 1, (2,), (3,), seed=0)
    with runs.stage_run("test"):
        return artifacts.log_model(model, input_example=torch.zeros(2, 1, 20).numpy())


def test_requirements_are_written_without_scanning_the_environment(client, unscanned, caplog):
    import mlflow

    with caplog.at_level(logging.WARNING, logger="mlflow"):
        uri = _log()
    assert not caplog.records, caplog.text  # no "unexpected error while detecting mismatches" either
    reqs = open(mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt")).read().split()
    assert f"torch=={version('torch')}" in reqs and f"mlflow=={version('mlflow')}" in reqs
    assert unscanned._MODULES_TO_PACKAGES is None  # restored: a later inference builds the real map
    assert client.get_run(uri.split("/")[1]).info.status == "FINISHED"


def test_the_requirements_are_still_checked(client, unscanned, monkeypatch, caplog):
    monkeypatch.setattr(artifacts, "pip_requirements", lambda: ["torch==0.0.1"])
    with caplog.at_level(logging.WARNING, logger="mlflow"):
        _log()
    assert "torch (current: " in caplog.text and "required: torch==0.0.1" in caplog.text
