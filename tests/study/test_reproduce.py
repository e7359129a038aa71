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


def _sweep_trial(client, tmp_path) -> str:
    """The run id of a finished trial of a 2-trial P(success) sweep (4 seeds, 60 epochs)."""
    from pipeline.config.studies import SweepConfig
    from pipeline.sweep import stage as sweep

    cfg = SweepConfig(study_name="again", filters=(1, 2), kernel_sizes=(3,), seeds=4, epochs=60, report_every=20,
                      n_trials=2, sampler="grid", progress=False, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                      no_system_metrics=True)
    parent = sweep.run(cfg, echo=lambda s: None).run_id
    trials = client.search_runs([client.get_run(parent).info.experiment_id],
                                filter_string="tags.stage = 'sweep-trial' and attributes.status = 'FINISHED'")
    return sorted(trials, key=lambda r: r.data.params["filters"])[-1].info.run_id  # the 2-filter trial


def test_a_sweep_trial_reruns_as_a_trial_like_run_equal_in_every_value(trained, tmp_path):
    client, _ = trained
    run_id = _sweep_trial(client, tmp_path)
    result = reproduce.run(ReproduceConfig(), run_id, echo=lambda s: None)
    original = client.get_run(run_id)
    values = sum(len(client.get_metric_history(run_id, k)) for k in original.data.metrics)  # every step of each
    assert result.equal and result.compared == values > len(original.data.metrics), result.line()
    again = client.get_run(result.reproduction)
    assert again.data.tags["reproduces"] == run_id and again.data.tags["stage"] == "sweep-trial"
    assert again.data.params == original.data.params  # its point: filters, kernel_size
    assert result.differs == []


def test_a_sweep_trial_with_other_training_code_differs(trained, tmp_path, monkeypatch):
    from pipeline.sweep import objectives

    client, _ = trained
    run_id = _sweep_trial(client, tmp_path)
    real = objectives.capacity_settings
    monkeypatch.setattr(objectives, "capacity_settings", lambda cfg: dataclasses.replace(real(cfg), lr=real(cfg).lr * 3))
    monkeypatch.setattr(identity, "code_version", lambda: ("c" * 40, False))
    result = reproduce.run(ReproduceConfig(), run_id, echo=lambda s: None)
    assert not result.equal and "; code differs" in result.line(), result.line()


def test_a_capacity_run_compares_its_child_runs_too(trained):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig

    client, _ = trained
    run_id = capacity.run(CapacityConfig(filters=(1, 2), kernel_sizes=(3,), seeds=4, epochs=30, no_system_metrics=True),
                          echo=lambda s: None).run_id
    result = reproduce.run(ReproduceConfig(), run_id, echo=lambda s: None)

    def values(rid):
        return sum(len(client.get_metric_history(rid, k)) for k in client.get_run(rid).data.metrics
                   if not reproduce.TIMINGS.search(k))

    kids = client.search_runs([client.get_run(run_id).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(kids) == 2
    assert result.equal and result.compared == values(run_id) + sum(values(k.info.run_id) for k in kids), result.line()
    gone = client.search_runs([client.get_run(run_id).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{result.reproduction}'")[0]
    client.delete_run(gone.info.run_id)  # a grid cell that the reproduction lacks
    name = gone.info.run_name.split(" (")[0]
    assert reproduce.compare(run_id, result.reproduction)[1] == f"child run {name!r}: none in the reproduction"


def test_nan_in_both_runs_is_the_same_value_and_nan_against_a_number_differs(monkeypatch):
    nan = float("nan")
    curves = {"a": {"median_final_loss": [(1, 0.5), (2, nan)]}, "b": {"median_final_loss": [(1, 0.5), (2, nan)]},
              "c": {"median_final_loss": [(1, 0.5), (2, 0.25)]}}
    monkeypatch.setattr(reproduce.reading, "all_curves", curves.__getitem__)
    assert reproduce.compare_metrics("a", "b", 0) == (2, None)
    count, first = reproduce.compare_metrics("a", "c", 0)
    assert count == 1 and first == "metric median_final_loss, step 2: nan (original) vs 0.25 at step 2 (reproduction)"
