"""Each place that catches a failure, made to fail: what it expects becomes one line (or bad input),
and what it does not expect (a dead store, a defect) goes on to end the stage."""
from __future__ import annotations

import pytest
import requests

from pipeline.errors import ConfigError

DEAD = requests.exceptions.ConnectionError("Connection refused")


def _missing(what: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    return MlflowException(f"Failed to download artifacts from path '{what}'", error_code=RESOURCE_DOES_NOT_EXIST)


def _raise(err):
    def fail(*args, **kwargs):
        raise err
    return fail


@pytest.fixture
def lines():
    said: list[str] = []
    return said


def test_a_figure_that_is_not_there_is_skipped_with_a_line(client, monkeypatch, lines):
    import mlflow

    from pipeline.tracking import artifacts

    monkeypatch.setattr(artifacts, "download", _raise(_missing("contour.png")))
    with mlflow.start_run():
        assert artifacts.copy_figures("abc", {"contour.png": "sweep_contour.png"}, lines.append) == []
    assert lines == ["figure contour.png of run abc is not there (not drawn): not copied to sweep_contour.png"]


def test_a_dead_store_is_not_taken_for_a_missing_figure(client, monkeypatch, lines):
    import mlflow

    from pipeline.tracking import artifacts

    monkeypatch.setattr(artifacts, "download", _raise(DEAD))
    with mlflow.start_run(), pytest.raises(requests.exceptions.ConnectionError):
        artifacts.copy_figures("abc", {"contour.png": "sweep_contour.png"}, lines.append)
    assert lines == []


def test_main_fails_on_a_dead_store_while_copying_the_sweeps_figures(monkeypatch):
    """main's front page calls copy_figures with its echo; a store failure there ends main (exit 1)."""
    from pipeline.study import main
    from pipeline.tracking import faults

    src = open(main.__file__).read()
    assert "artifacts.copy_figures(swept.run_id" in src and "except" not in src.split("def front_page")[1]
    assert faults.describe(DEAD)[0] == 1


def test_the_trained_runs_options_not_inherited_are_said(client, lines):
    import mlflow

    from pipeline.tracking.provenance import run_settings

    assert run_settings("0123456789abcdef0123456789abcdef", lines.append) == ({}, {})
    assert len(lines) == 1 and "not in this tracking store" in lines[0] and "--data-uri" in lines[0]
    with mlflow.start_run() as run:
        mlflow.log_param("dataset", "digits")
    lines.clear()
    settings, _ = run_settings(run.info.run_id, lines.append)
    assert settings == {"dataset": "digits"}
    assert len(lines) == 1 and "no config.json" in lines[0] and "--data-dir" in lines[0]


def test_the_trained_run_on_a_dead_store_fails(client, monkeypatch, lines):
    import mlflow

    from pipeline.tracking.provenance import run_settings

    with mlflow.start_run() as run:
        pass
    monkeypatch.setattr(mlflow.MlflowClient, "get_run", _raise(DEAD))
    with pytest.raises(requests.exceptions.ConnectionError):
        run_settings(run.info.run_id, lines.append)
    monkeypatch.undo()
    monkeypatch.setattr(mlflow.artifacts, "load_dict", _raise(DEAD))
    with pytest.raises(requests.exceptions.ConnectionError):
        run_settings(run.info.run_id, lines.append)


def test_best_effort_says_what_was_not_done(capsys):
    from pipeline.tracking import faults, runs

    def set_tag(*args):
        raise RuntimeError("boom")

    faults.reset_lost()
    assert runs.best_effort(set_tag, "error", "x") is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Note: set_tag was not done") and "boom" in err
    faults.mark_lost("gone")
    try:
        assert runs.best_effort(set_tag) is False
        assert capsys.readouterr().err == ""  # the StoreLost message says the run could not be ended
    finally:
        faults.reset_lost()
    assert runs.best_effort(lambda: None) is True


def test_an_uninstalled_distribution_goes_unpinned_and_nothing_else_is_caught(monkeypatch):
    import importlib.metadata

    from pipeline.tracking import artifacts

    monkeypatch.setattr(importlib.metadata, "version", _raise(importlib.metadata.PackageNotFoundError("x")))
    assert artifacts.pip_requirements() == ["torch", "mlflow", "numpy", "cloudpickle"]
    monkeypatch.setattr(importlib.metadata, "version", _raise(RuntimeError("defect")))
    with pytest.raises(RuntimeError):
        artifacts.pip_requirements()


def test_retry_locked_retries_a_busy_store_only():
    import sqlite3

    from pipeline.tracking import faults

    calls = []

    def busy_once():
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert faults.retry_locked(busy_once) == "done" and len(calls) == 2
    calls.clear()

    def defect():
        calls.append(1)
        raise ValueError("database is locked")  # not a store's error type: not retried

    with pytest.raises(ValueError):
        faults.retry_locked(defect)
    assert len(calls) == 1


@pytest.mark.parametrize("url", ["postgresql://u@h:notaport/db", "not a url at all"])
def test_a_bad_database_url_is_bad_input(url):
    from pipeline.tracking.stores import check_db_url

    with pytest.raises(ConfigError, match="not a database URL"):
        check_db_url(url, "--tracking-uri")


def test_the_sql_probe_names_a_server_that_does_not_answer(monkeypatch):
    import sqlalchemy
    from sqlalchemy.exc import OperationalError

    from pipeline.tracking import watch

    class Engine:
        def connect(self):
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(sqlalchemy, "create_engine", lambda *a, **k: Engine())
    probe = watch._sql_probe("postgresql://u@127.0.0.1:1/db")
    assert "connection refused" in probe()


def test_a_rescue_item_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    from pipeline.tracking import rescue

    monkeypatch.setattr(rescue, "rescue_root", lambda: tmp_path)
    full = _raise(OSError(28, "No space left on device"))  # a kept item is called for its value when saved
    folder = rescue.save(rescue.Keep(config={"a": 1}, metrics=full), "train", None, "sqlite:///x.db", "gone")
    readme = (folder / "README.txt").read_text()
    assert "  config.json" in readme and "not saved: metrics (OSError: [Errno 28] No space left" in readme


def test_a_foreign_data_file_is_bad_input(tmp_path):
    import torch

    from pipeline.data.bundle import DataBundle

    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save({"name": "x"}, tmp_path / "partial.pt")  # ours in form, but not a bundle
    for name in ("junk.pt", "partial.pt"):
        with pytest.raises(ConfigError, match="not a prepared data file"):
            DataBundle.load(tmp_path / name)


def test_a_failed_download_is_one_line_and_a_defect_is_not_hidden(tmp_path, monkeypatch):
    from pipeline.data import images

    monkeypatch.setattr(images, "_torchvision_class",
                        lambda d: _raise(RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried x")))
    with pytest.raises(ConfigError) as caught:
        images._download("mnist", tmp_path)
    assert "\n" not in str(caught.value) and "--download mnist" in str(caught.value)
    monkeypatch.setattr(images, "_torchvision_class", lambda d: _raise(AssertionError("defect")))
    with pytest.raises(AssertionError):
        images._download("mnist", tmp_path)


def test_a_run_or_model_that_is_not_there_is_bad_input_and_a_dead_store_is_not(client, monkeypatch):
    import mlflow
    import torch

    from pipeline.tracking import serving

    with pytest.raises(ConfigError, match="cannot load model of run"):
        serving.model_uri_of_run("0123456789abcdef0123456789abcdef")
    with pytest.raises(ConfigError, match="no model there"):
        serving.check_servable("runs:/0123456789abcdef0123456789abcdef/model", "127.0.0.1", 0)
    with pytest.raises(ConfigError, match="cannot load model"):
        serving.load_module("runs:/0123456789abcdef0123456789abcdef/model", torch.device("cpu"))
    monkeypatch.setattr(mlflow.MlflowClient, "get_run", _raise(DEAD))
    with pytest.raises(requests.exceptions.ConnectionError):
        serving.model_uri_of_run("0123456789abcdef0123456789abcdef")
