"""`pipeline reproduce`: a finished train run run again and compared value by value."""
from __future__ import annotations

import dataclasses
import re

import pytest

from pipeline.config.stages import ReproduceConfig, TrainConfig
from pipeline.study import reproduce
from pipeline.tracking import identity
from pipeline.train import stage as train

EPOCHS = 5


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """(client, the id of a finished 5-epoch train run of the 4-filter detector) in a fresh store."""
    import mlflow

    from pipeline.tracking import compat

    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    compat.forget_active_experiment()
    mlflow.set_tracking_uri(uri)
    result = train.run(TrainConfig(filters=(4,), seed=0, epochs=EPOCHS, device="cpu"), echo=lambda s: None)
    return mlflow.MlflowClient(uri), result.run_id


def test_an_unchanged_rerun_is_equal_in_every_value(trained):
    client, run_id = trained
    result = reproduce.run(ReproduceConfig(), run_id, echo=lambda s: None)
    # 4 curves (train/val loss and accuracy) per epoch, num_parameters, and the weights of Conv1d(1, 4, 5) + Linear(4, 1)
    assert result.equal and result.compared == 4 * EPOCHS + 1 + (4 * 5 + 4) + (4 + 1)
    assert f"{result.compared} values compared, all equal" in result.line()
    assert client.get_run(result.reproduction).data.tags["reproduces"] == run_id
    assert result.differs == []


def test_changed_training_code_gives_the_first_difference_and_says_the_code_differs(trained, monkeypatch):
    client, run_id = trained
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda model, bundle, cfg, *a, **k: real_fit(
        model, bundle, dataclasses.replace(cfg, lr=cfg.lr * 2), *a, **k))  # "one line of the training code"
    monkeypatch.setattr(identity, "code_version", lambda: ("c" * 40, False))
    result = reproduce.run(ReproduceConfig(), run_id, echo=lambda s: None)
    assert not result.equal and "; code differs" in result.line()
    m = re.search(r"metric (\w+), step (\d+): (\S+) \(original\) vs (\S+) at step \d+ \(reproduction\)", result.line())
    assert m, result.line()
    key, step = m.group(1), int(m.group(2))
    original = {h.step: h.value for h in client.get_metric_history(run_id, key)}
    again = {h.step: h.value for h in client.get_metric_history(result.reproduction, key)}
    assert float(m.group(3)) == original[step] != again[step] == float(m.group(4))
