"""The tests' stores (helpers.new_store) are what MLflow itself makes in a new folder, in milliseconds."""
from __future__ import annotations

import os

from helpers import _make_store, new_store


def _experiments(uri):
    import mlflow

    return [(e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage)
            for e in mlflow.MlflowClient(uri).search_experiments()]


def test_a_copied_store_is_a_store_made_in_its_folder(tmp_path):
    made, copied = tmp_path / "made", tmp_path / "copied"
    made.mkdir(), copied.mkdir()
    by_mlflow = _experiments(f"sqlite:///{_make_store(made)}")
    copy = _experiments(new_store(copied))
    assert [e[:2] for e in copy] == [e[:2] for e in by_mlflow] == [("0", "Default")]
    assert copy[0][2] == by_mlflow[0][2].replace(str(made), str(copied)) == str(copied / "mlruns" / "0")


def test_the_default_experiment_logs_its_artifacts_in_the_tests_folder(tracking_uri, tmp_path):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    assert (tmp_path / "mlruns" / "0" / run.info.run_id / "artifacts" / "note.txt").is_file()
    assert os.path.samefile(os.getcwd(), tmp_path)
