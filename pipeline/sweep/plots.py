"""Optuna's matplotlib plots of a sweep, drawn in the drawing helper process (``tracking/drawing.py``).

The helper gets plain, picklable data (the study's FrozenTrials, its directions and metric names),
rebuilds the study in memory and draws one plot. This module imports neither torch nor mlflow, and
the stage's process never imports it: Optuna's plots load matplotlib and, for the importances,
scikit-learn (about 1.5 s), which the helper does on the other core while the trials train.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import optuna

# What Optuna's plots raise for a study they cannot draw (e.g. a contour over a parameter the study lacks):
# the plot is skipped, as before they were drawn in the helper.
CANNOT_DRAW = (ValueError, RuntimeError, ZeroDivisionError, IndexError, KeyError)


def rebuild(trials: Sequence[Any], directions: Sequence[str], metric_names: Sequence[str] | None) -> Any:
    """An in-memory study holding ``trials`` (FrozenTrials), as the plots see the stored one."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" on stderr
    study = optuna.create_study(directions=list(directions))
    study.add_trials(trials)
    if metric_names:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*set_metric_names is experimental",
                                    optuna.exceptions.ExperimentalWarning, r"pipeline\.sweep")
            study.set_metric_names(list(metric_names))
    return study


def quiet() -> None:
    """Ignore, each from the module that raises it, the warnings that drawing a sweep's plots gives (found
    by drawing them with warnings as errors); inside ``warnings.catch_warnings()``."""
    filterwarnings = warnings.filterwarnings
    experimental = optuna.exceptions.ExperimentalWarning
    filterwarnings("ignore", r"optuna\.visualization\.matplotlib\..* is experimental", experimental, r"pipeline\.sweep")
    # the importances of a multi-objective study's first objective: `ranked` below does as it asks
    filterwarnings("ignore", r"PedAnovaImportanceEvaluator computes the importances of params to achieve low",
                   UserWarning, r"optuna\.importance\._ped_anova")
    # every trial alike (one configuration, or equal values): the plot shows it as it is
    filterwarnings("ignore", "Target and region quantiles select the same set of trials", UserWarning,
                   r"optuna\.importance\._ped_anova")
    filterwarnings("ignore", "Attempting to set identical low and high xlims", UserWarning,
                   r"optuna\.visualization\.matplotlib\._slice")
    # the slice plot's colour bar: tight_layout lays out the rest
    filterwarnings("ignore", "This figure includes Axes that are not compatible with tight_layout", UserWarning,
                   r"pipeline\.sweep\.plots")


def optuna_figure(name: str, trials: Sequence[Any], directions: Sequence[str], metric_names: Sequence[str] | None,
                  params: Sequence[str], target_name: str) -> Any:
    """Optuna's plot ``name`` (optimization_history, slice, contour, param_importances, pareto_front,
    intermediate_values) of the study made of ``trials``, at least 7 x 5 inches; None when it cannot be
    drawn (see CANNOT_DRAW), which the drawing helper takes as nothing to log."""
    import optuna.visualization.matplotlib as ovm

    from pipeline.tracking.figures import plt

    study = rebuild(trials, directions, metric_names)
    multi = len(directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    # Optuna's importance evaluator (PED-ANOVA) ranks parameters by how they reach *low* values of a target
    ranked = (lambda t: -t.values[0]) if multi and directions[0] == "maximize" else target
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name),
        "slice": lambda: ovm.plot_slice(study, params=list(params), target=target, target_name=target_name),
        "contour": lambda: ovm.plot_contour(study, params=list(params), target=target, target_name=target_name),
        "param_importances": lambda: ovm.plot_param_importances(study, target=ranked, target_name=target_name),
        "pareto_front": lambda: ovm.plot_pareto_front(study, target_names=[target_name, "parameters"]),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    make = plots[name]
    try:
        with warnings.catch_warnings():
            quiet()
            ax = make()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 5))
            fig.tight_layout()
    except CANNOT_DRAW:
        plt.close("all")
        return None
    return fig
