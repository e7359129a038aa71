"""The accuracy objective over S seeds trained at once: the value is their mean, the spread is kept."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.studies import SweepConfig
from pipeline.errors import ConfigError
from pipeline.sweep import stage as sweep


def test_accuracy_trial_is_the_mean_over_seeds_with_the_spread_kept(client):
    import optuna

    cfg = SweepConfig(objective="accuracy", dataset="digits", study_name="seeds", n_trials=2, epochs=2, seeds=3,
                      filters=(2, 4), kernel_sizes=(3,), sampler="grid", pruner="none", progress=False)
    assert cfg.trial_seeds == (0, 1, 2) and SweepConfig().trial_seeds == tuple(range(50))
    sweep.run(cfg, echo=lambda s: None)
    study = optuna.load_study(study_name="seeds", storage="sqlite:///optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    for trial in study.trials:
        per_seed = trial.user_attrs["val_accuracy_per_seed"]
        assert len(per_seed) == 3 and trial.value == pytest.approx(np.mean(per_seed), abs=1e-5)
        assert trial.user_attrs["val_accuracy_std"] == pytest.approx(np.std(per_seed), abs=1e-5)
        assert 0 < trial.user_attrs["test_accuracy_mean"] <= 1
        run_id = trial.user_attrs["mlflow_run_id"]
        metrics = client.get_run(run_id).data.metrics
        assert metrics["seeds"] == 3 and metrics["val_accuracy_std"] == pytest.approx(np.std(per_seed), abs=1e-5)
        steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
        assert steps == [1, 2]  # the mean over seeds, reported (and pruned on) every epoch


def test_seeds_on_the_synthetic_accuracy_objective_is_an_error(tracking_uri):
    with pytest.raises(ConfigError, match="--objective success"):
        sweep.run(SweepConfig(objective="accuracy", seeds=4, study_name="x", n_trials=1, epochs=2, progress=False),
                  echo=lambda s: None)
