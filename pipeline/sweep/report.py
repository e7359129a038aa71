"""What a sweep reports: best trial(s), counts by state, the trials table and Optuna's plots (which
apply is decided here; the drawing helper process draws them with ``plots.py``).

Used by ``pipeline sweep`` (logged on its parent run) and ``pipeline study-summary``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from pipeline.errors import ConfigError
from pipeline.sweep.storage import make_storage
from pipeline.tracking import sweeps
from pipeline.tracking.artifacts import log_table
from pipeline.tracking.drawing import Drawing
from pipeline.tracking.redact import redact

PLOT = "pipeline.sweep.plots:optuna_figure"  # by name: this process never imports Optuna's plots
# modules that the plots import, loaded in the helper while the trials run (scikit-learn with the importances)
PLOT_MODULES = ("pipeline.sweep.plots", "optuna.visualization.matplotlib", "optuna.importance")


def trial_row(t: Any) -> dict[str, Any]:
    return {"number": t.number, "params": t.params, "values": t.values,
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}


def best_trials(study: Any) -> list[dict[str, Any]]:
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return []
    chosen = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    return [trial_row(t) for t in chosen]


def state_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def log_study_summary(study: Any, best: list[dict[str, Any]], names: Sequence[str], objective: str,
                      metrics: dict[str, float], drawing: Drawing) -> None:
    """On the parent run: best trial(s), ``metrics``, the trials table and Optuna's plots (logged when
    ``drawing`` has drawn them)."""
    sweeps.log_summary(best, metrics)
    log_table(trials_table(study), "trials.csv")
    draw_figures(study, names, objective, drawing)


def trials_table(study: Any) -> Any:
    """``study.trials_dataframe()`` with what a reader looks for first: number, state, values, params."""
    df = study.trials_dataframe()
    first = ["number", "state"] + [c for c in df.columns if c.startswith("value")]
    first += [c for c in df.columns if c.startswith("params_")]
    return df[first + [c for c in df.columns if c not in first]]


def describe_sweep(cfg: Any) -> str:
    """The first line of a sweep parent's description: the study, what it measures, over what."""
    from pipeline.sweep.space import param_names, prunes
    from pipeline.sweep.trials import objective_text

    pruner = f"median pruner after {cfg.pruner_startup_trials} trials" if prunes(cfg) else "no pruner"
    space = f"filters {{{','.join(map(str, cfg.filters))}}} × kernel sizes {{{','.join(map(str, cfg.kernel_sizes))}}}"
    layers = len(param_names(cfg))
    return (f"Optuna study `{cfg.study_name}` ({cfg.sampler.upper()} sampler, {pruner}): {cfg.n_trials} trials of "
            f"{objective_text(cfg)}, over {space}{' per conv layer' if layers > 1 else ''}.")


def describe_result(study: Any, best: list[dict[str, Any]], names: Sequence[str], trained: int) -> str:
    """The second part: how the study stands, and its best trial in words."""
    counts = state_counts(study)
    repeats = sum("repeat_of" in t.user_attrs for t in study.get_trials(deepcopy=False))
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
    text = (f"The study has {len(study.trials)} trials ({states}); {trained} configurations trained, {repeats} "
            "repeats reused without training.")
    for b in best[:3]:
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in b["params"].items())
        values = ", ".join(f"{n} = {v:.3g}" for n, v in zip(names, b["values"]))
        text += f" Best: trial {b['number']}, {params}: **{values}**."
    return text + " Figures: the optimisation history, the contour over the search space, intermediate values."


def figure_names(study: Any) -> list[str]:
    """Optuna's plots that apply to this study, decided from counts (the drawing is in ``plots.py``)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return []
    multi = len(study.directions) > 1
    names = ["optimization_history", "slice"]
    if len(complete) >= 3:
        names += ["contour", "param_importances"]
    if multi:
        names.append("pareto_front")
    if not multi and any(t.intermediate_values for t in trials):  # else Optuna warns
        names.append("intermediate_values")
    return names


def draw_figures(study: Any, names: Sequence[str], objective: str, drawing: Drawing) -> None:
    """Optuna's plots that apply, drawn by the helper process from the study's trials and logged as
    ``figures/<plot>.png``; a plot that cannot be drawn is skipped."""
    trials = study.get_trials(deepcopy=False)
    directions = [d.name.lower() for d in study.directions]
    target_name = "P(success)" if objective == "success" else "validation accuracy"
    for name in figure_names(study):
        drawing.figure(f"figures/{name}.png", PLOT, name, trials, directions, study.metric_names, list(names),
                       target_name)


def format_summary(study_name: str, storage: str, best: list[dict[str, Any]], counts: dict[str, int],
                   directions: list[str]) -> str:
    lines = [f"study {study_name!r} in {storage}: "
             + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))]
    if not best:
        lines.append("no completed trial yet")
    label = "Pareto front" if len(directions) > 1 else "best trial"
    for b in best:
        vals = ", ".join(f"{v:.4g}" for v in b["values"])
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in b["params"].items())
        lines.append(f"{label}: #{b['number']}  {params}  ->  {vals}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v)


def summary(study_name: str, storage: str | None, top: int = 5) -> str:
    """The text of `pipeline study-summary`: counts by state and the best trials."""
    import optuna

    st = make_storage(storage, heartbeat_interval=None, must_exist=True)
    try:
        study = optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise ConfigError(f"no study {study_name!r} in {redact(storage or 'sqlite:///optuna.db')}"
                          f" (studies there: {', '.join(names) or 'none'})") from None
    counts = state_counts(study)
    best = best_trials(study)
    if len(study.directions) == 1:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
        done.sort(key=lambda t: sign * t.value)
        best = [trial_row(t) for t in done[:top]]
    front = len(best)  # several objectives: the Pareto front, its first ``top`` by the first objective shown
    if len(study.directions) > 1:
        sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        best = sorted(best, key=lambda b: sign * b["values"][0])[:top]
    text = format_summary(study_name, redact(storage or "sqlite:///optuna.db"), best, counts,
                          [d.name.lower() for d in study.directions])
    if front > len(best):
        text += f"\n({front - len(best)} more trials on the Pareto front: --top {front} shows them all)"
    return text.replace("best trial:", "top trial:") if len(best) > 1 else text
