"""What a sweep reports: best trial(s), counts by state, the trials table and Optuna's plots.

Used by ``pipeline sweep`` (logged on its parent run) and ``pipeline study-summary``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from pipeline.errors import ConfigError
from pipeline.sweep.storage import make_storage
from pipeline.tracking import sweeps
from pipeline.tracking.artifacts import log_figure, log_table
from pipeline.tracking.redact import redact


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
                      metrics: dict[str, float]) -> None:
    """On the parent run: best trial(s), ``metrics``, the trials table and Optuna's plots."""
    sweeps.log_summary(best, metrics)
    log_table(trials_table(study), "trials.csv")
    for name, fig in optuna_figures(study, names, objective):
        log_figure(fig, f"figures/{name}.png")


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


def optuna_figures(study: Any, names: Sequence[str], objective: str) -> list[tuple[str, Any]]:
    """Optuna's matplotlib plots that apply to this study (a plot that cannot be drawn is skipped)."""
    import warnings

    import optuna
    import optuna.visualization.matplotlib as ovm

    from pipeline.tracking.figures import plt

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return []
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    target_name = "P(success)" if objective == "success" else "validation accuracy"
    plots: list[tuple[str, Callable[[], Any]]] = [
        ("optimization_history", lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name)),
        ("slice", lambda: ovm.plot_slice(study, params=list(names), target=target, target_name=target_name)),
    ]
    if len(complete) >= 3:
        plots.append(("contour", lambda: ovm.plot_contour(study, params=list(names), target=target,
                                                          target_name=target_name)))
        plots.append(("param_importances", lambda: ovm.plot_param_importances(study, target=target,
                                                                              target_name=target_name)))
    if multi:
        plots.append(("pareto_front", lambda: ovm.plot_pareto_front(
            study, target_names=[target_name, "parameters"])))
    if not multi and any(t.intermediate_values for t in study.get_trials(deepcopy=False)):  # else Optuna warns
        plots.append(("intermediate_values", lambda: ovm.plot_intermediate_values(study)))
    out = []
    for name, make in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 5))
                fig.tight_layout()
            out.append((name, fig))
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError, KeyError):
            plt.close("all")  # e.g. importances need two distinct parameter values
    return out


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
    text = format_summary(study_name, redact(storage or "sqlite:///optuna.db"), best, counts,
                          [d.name.lower() for d in study.directions])
    return text.replace("best trial:", "top trial:") if len(best) > 1 else text
