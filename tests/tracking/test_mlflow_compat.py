"""MLflow's private names that pipeline/tracking/compat.py relies on are still there and still mean the same,
and what they save: the model's requirements are written without MLflow's scan of every package, and still checked."""
from __future__ import annotations

import importlib
import logging
import os
from importlib.metadata import version

import pytest
import torch

from pipeline.models.registry import build_model
from pipeline.tracking import artifacts, compat, runs


@pytest.mark.parametrize("module,name", compat.PRIVATE_NAMES)
def test_the_private_name_is_still_there(module, name):
    import mlflow

    mod = importlib.import_module(module)
    assert hasattr(mod, name), (
        f"MLflow {mlflow.__version__} has no {module}.{name}: pipeline/tracking/compat.py relies on it; "
        "update that module (its public fallback runs meanwhile)")


def test_the_requirements_map_is_built_lazily_under_that_name():
    """compat replaces it only while it is None (not built): MLflow must still build it on first use."""
    from mlflow.utils import requirements_utils

    assert getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is None or isinstance(
        requirements_utils._MODULES_TO_PACKAGES, dict), (
        "MLflow changed requirements_utils._MODULES_TO_PACKAGES: update pipeline/tracking/compat.py")


def test_the_scan_is_skipped_and_restored(monkeypatch):
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    with compat.without_distribution_scan():
        assert requirements_utils._MODULES_TO_PACKAGES == {}
    assert requirements_utils._MODULES_TO_PACKAGES is None


def test_the_active_experiment_is_the_one_set_and_forgotten(tracking_uri):
    import mlflow

    experiment_id = mlflow.create_experiment("compat")
    mlflow.set_experiment(experiment_id=experiment_id)
    # set_experiment exports it too: what is left is MLflow's own state (not monkeypatch: it would restore it)
    os.environ.pop("MLFLOW_EXPERIMENT_ID")
    assert compat.active_experiment_id() == experiment_id, (
        "MLflow's fluent._get_experiment_id no longer gives set_experiment's choice: update "
        "pipeline/tracking/compat.py")
    compat.forget_active_experiment()
    assert compat.active_experiment_id() == "0", (
        "setting fluent._active_experiment_id = None no longer forgets set_experiment's choice: update "
        "pipeline/tracking/compat.py")
    with mlflow.start_run() as run:  # what start_run uses, independently of compat
        assert run.info.experiment_id == "0"


def test_the_public_fallback_reads_the_environment(tracking_uri, monkeypatch):
    import mlflow
    from mlflow.tracking import fluent

    experiment_id = mlflow.create_experiment("by-name")
    monkeypatch.delattr(fluent, "_get_experiment_id")
    assert compat.active_experiment_id() == "0"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "by-name")
    assert compat.active_experiment_id() == experiment_id
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "42")
    assert compat.active_experiment_id() == "42"


# --------------------------------------------------- the distribution scan that compat.without_distribution_scan skips

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
