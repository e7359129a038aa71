"""Sweeps as Optuna's own tools read them: each configuration trained once, named objectives,
intermediate values, pruning no more eager than Optuna's defaults, a trials table that starts
with what matters."""
from __future__ import annotations

import optuna
import pandas as pd

from pipeline.capacity import outcomes
from pipeline.config.studies import SweepConfig
from pipeline.sweep import stage as sweep
from pipeline.sweep.space import make_pruner


def test_twelve_trials_over_eight_configurations_train_each_once(client, monkeypatch):
    trained: list[tuple[int, int]] = []
    real = outcomes.seed_table

    def counting(filters, kernel_size, *args, **kwargs):
        trained.append((filters, kernel_size))
        return real(filters, kernel_size, *args, **kwargs)

    monkeypatch.setattr(outcomes, "seed_table", counting)
    cfg = SweepConfig(study_name="twelve", filters=(1, 2, 3, 4), kernel_sizes=(3, 5), seeds=8, epochs=100,
                      report_every=20, n_trials=12, progress=False)
    result = sweep.run(cfg, echo=lambda s: None)

    assert len(trained) == len(set(trained)) == 8  # every configuration, none twice
    study = optuna.load_study(study_name="twelve", storage="sqlite:///optuna.db")
    assert len(study.trials) == 12 and study.metric_names == ["p_success"]
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 4
    for t in repeats:  # a repeat gives back the earlier trial's result, intermediate values included
        earlier = study.trials[t.user_attrs["repeat_of"]]
        assert t.params == earlier.params and t.state == earlier.state
        assert t.intermediate_values == earlier.intermediate_values
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.values == earlier.values
    for t in study.trials:  # P(success) so far at epoch 1, every 20 epochs and the last
        steps = sorted(t.intermediate_values)
        assert steps[:2] == [1, 20] and all(0 <= v <= 1 for v in t.intermediate_values.values())
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert steps == [1, 20, 40, 60, 80, 100] and t.intermediate_values[100] == t.value

    runs = {r.data.tags["trial_number"]: r for r in client.search_runs(
        [client.get_run(result.run_id).info.experiment_id], "tags.stage = 'sweep-trial'")}
    for t in study.trials:
        run = runs[str(t.number)]
        assert run.info.run_name == f"trial {t.number} F{t.params['filters']} k{t.params['kernel_size']}"
        assert run.data.tags.get("repeat_of_trial") == (str(t.user_attrs["repeat_of"]) if t in repeats else None)
        assert run.data.tags["mlflow.note.content"].count("\n\n") == 1
    table = pd.read_csv(client.download_artifacts(result.run_id, "trials.csv"))
    assert list(table.columns[:5]) == ["number", "state", "value_p_success", "params_filters", "params_kernel_size"]
    assert client.get_run(result.run_id).data.metrics["configurations_trained"] == 8


def _prunes(pruner, completed: int, step: int) -> bool:
    """Whether ``pruner`` stops a trial reporting 0 at ``step``, after ``completed`` trials that reported 1
    at every step up to 200 (maximised: 0 is below their median)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(completed):
        study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={s: 1.0 for s in range(201)}))
    trial = study.ask()
    trial.report(0.0, step)
    return trial.should_prune()


def test_the_pruner_is_no_more_eager_than_optunas_default():
    ours, optunas = make_pruner(SweepConfig()), optuna.pruners.MedianPruner()
    assert isinstance(ours, optuna.pruners.MedianPruner)
    for completed in range(7):
        for step in (0, 1, 7, 100):
            assert _prunes(ours, completed, step) == _prunes(optunas, completed, step), (completed, step)
    assert _prunes(optunas, 5, 0) and not _prunes(optunas, 4, 100)  # Optuna's default: after 5 trials, no warm-up
    tuned = make_pruner(SweepConfig(pruner_startup_trials=2, pruner_warmup_epochs=100))
    assert (_prunes(tuned, 1, 150), _prunes(tuned, 2, 99), _prunes(tuned, 2, 100)) == (False, False, True)
    for never in (SweepConfig(sampler="grid"), SweepConfig(multi_objective=True), SweepConfig(pruner="none")):
        assert isinstance(make_pruner(never), optuna.pruners.NopPruner)
