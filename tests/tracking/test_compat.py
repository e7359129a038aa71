"""MLflow's private names that pipeline/tracking/compat.py relies on are still there and still mean the same."""
from __future__ import annotations

import importlib
import os

import pytest

from pipeline.tracking import compat


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
