"""MLflow's system metrics: a run longer than the sampling interval has CPU and memory charts in its System
metrics tab; ``--no-system-metrics`` has none; a run shorter than the interval is untouched."""
from __future__ import annotations

import pytest

from pipeline.config.stages import TrainConfig
from pipeline.config.studies import SweepConfig

CHARTS = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}


def _system_keys(client, run_id: str) -> set[str]:
    return {k for k in client.get_run(run_id).data.metrics if k.startswith("system/")}


@pytest.mark.parametrize("off", [False, True])
def test_a_train_run_longer_than_the_interval_has_cpu_and_memory_charts(client, monkeypatch, off):
    from pipeline.train import stage as train

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.05")  # the run takes far longer
    result = train.run(TrainConfig(epochs=50, filters=(2,), no_system_metrics=off), echo=lambda s: None)
    keys = _system_keys(client, result.run_id)
    assert keys == set() if off else CHARTS <= keys, keys
    assert "no_system_metrics" not in client.get_run(result.run_id).data.params  # how it ran, not what it is
    # the model (the Models tab) is given none of the run's metrics: not the machine's samples (nor, on
    # PostgreSQL, MLflow's re-insert of them, which psycopg warns about); evaluate links its test metrics
    import mlflow

    (model,) = mlflow.search_logged_models(filter_string=f"source_run_id = '{result.run_id}'", output_format="list")
    assert not model.metrics, [(m.key, m.step) for m in model.metrics or []]


def test_a_train_run_shorter_than_the_interval_is_untouched(client):
    from pipeline.train import stage as train

    result = train.run(TrainConfig(epochs=5, filters=(2,)), echo=lambda s: None)  # well under 10 s
    assert _system_keys(client, result.run_id) == set()


def test_each_sweep_trial_has_its_own_system_metrics(client, monkeypatch, tmp_path):
    from pipeline.sweep import stage as sweep

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.05")
    # trials long enough for samples at 0.05 s: the compiled trainer takes about 0.3 s for each
    cfg = SweepConfig(study_name="sysm", filters=(1, 2), kernel_sizes=(3,), seeds=200, epochs=10000, report_every=500,
                      n_trials=2, sampler="grid", progress=False, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    result = sweep.run(cfg, echo=lambda s: None)
    trials = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                filter_string="tags.stage = 'sweep-trial'")
    assert len(trials) == 2
    for trial in trials:
        assert CHARTS <= _system_keys(client, trial.info.run_id), trial.info.run_name
        assert trial.info.status == "FINISHED"
