"""Optuna's plots of a sweep: drawn by the drawing helper process, logged on the parent run, skipped
when they cannot be drawn (that the stage's own process never loads Optuna's plotting nor scikit-learn
is checked in a fresh interpreter by tests/tracking/test_drawing.py)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from pipeline.tracking import runs
from pipeline.tracking.drawing import Drawing, DrawingError


def _study(objective, n_trials=4, directions=("maximize",)):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(directions), sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=n_trials)
    return study


def _figures(client, run_id):
    return {a.path for a in client.list_artifacts(run_id, "figures")}


def test_a_sweeps_figures_are_drawn_in_the_helper_and_logged_on_its_parent_run(client, tmp_path):
    """In process: which figures, and their look. A fresh interpreter checks what the stage's process loads, and
    that the plots' warnings are all named: tests/tracking/test_drawing.py (`pipeline main` ends with a sweep)."""
    import optuna

    from pipeline.config.studies import SweepConfig
    from pipeline.sweep import stage

    cfg = SweepConfig(study_name="figs", n_trials=4, seeds=8, epochs=60, report_every=20, sampler="random",
                      progress=False, pruner_startup_trials=10)
    run_id = stage.run(cfg, echo=lambda s: None).run_id
    study = optuna.load_study(study_name="figs", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and all(t.intermediate_values for t in complete)
    # the rules, as before the plots moved: history and slice once a trial is complete; contour and importances
    # from 3 complete trials; intermediate values when a trial reported some (single objective)
    names = {"optimization_history", "slice", "contour", "param_importances", "intermediate_values"}
    assert _figures(client, run_id) == {f"figures/{n}.png" for n in names}
    png = Image.open(client.download_artifacts(run_id, "figures/contour.png"))
    assert png.size[0] >= 700 and png.size[1] >= 500  # at least 7 x 5 inches
    pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 10  # drawn, not blank


def test_a_plot_that_cannot_be_drawn_is_skipped_and_the_others_logged(client):
    from pipeline.sweep.report import draw_figures

    study = _study(lambda t: t.suggest_categorical("filters", [1, 2, 4]) / 4)  # no kernel_size parameter
    with runs.stage_run("test") as run, Drawing() as drawing:
        draw_figures(study, ["filters", "kernel_size"], "success", drawing)
    # slice and contour over a parameter that the study lacks: Optuna raises ValueError, the plot is skipped
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert _figures(client, run.info.run_id) == {"figures/optimization_history.png", "figures/param_importances.png"}


def test_the_helpers_data_survives_the_pipe_and_a_missing_parameter_gives_none():
    from pipeline.sweep.plots import optuna_figure

    study = _study(lambda t: t.suggest_categorical("filters", [1, 2, 4]) / 4)
    trials = pickle.loads(pickle.dumps(study.get_trials(deepcopy=False)))  # as the helper receives them
    assert [t.params for t in trials] == [t.params for t in study.trials]
    assert optuna_figure("contour", trials, ["maximize"], None, ["filters", "kernel_size"], "P(success)") is None
    fig = optuna_figure("optimization_history", trials, ["maximize"], None, ["filters"], "P(success)")
    ax = fig.axes[0]
    best = np.maximum.accumulate([t.value for t in study.trials])  # the history's best-so-far line
    assert any(np.allclose(line.get_ydata(), best) for line in ax.get_lines())
    assert tuple(fig.get_size_inches()) >= (7, 5)


def test_multi_objective_importances_rank_what_reaches_a_high_first_objective():
    from pipeline.sweep.plots import optuna_figure

    def objective(t):  # high first values come from a high `a`, low ones from a low `b`
        a, b = t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)
        return a - 10 * (b < 0.2), b

    study = _study(objective, n_trials=60, directions=("maximize", "minimize"))
    fig = optuna_figure("param_importances", study.get_trials(deepcopy=False), ["maximize", "minimize"], None,
                        ["a", "b"], "P(success)")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert sorted(labels) == ["a", "b"] and dict(zip(labels, widths))["a"] > 0.5  # not b's low values


def test_an_unknown_plot_fails_the_run_loudly(client):
    with pytest.raises(DrawingError, match="KeyError.*no_such_plot"):
        with runs.stage_run("test"), Drawing() as drawing:
            drawing.figure("figures/x.png", "pipeline.sweep.plots:optuna_figure", "no_such_plot", [], ["maximize"],
                           None, [], "x")


def test_a_preload_that_fails_fails_the_run(client):
    with pytest.raises(DrawingError, match="ModuleNotFoundError.*no_such_module"):
        with runs.stage_run("test"), Drawing() as drawing:
            drawing.preload("json", "no_such_module")
