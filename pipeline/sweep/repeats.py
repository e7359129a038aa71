"""A configuration is trained once per study: a trial that draws a finished configuration again
replays that trial's result instead of training it a second time.

Samplers do propose a configuration again, TPE especially in a small categorical space (a
12-trial sweep over 8 configurations must repeat some). The repeat reports the earlier
trial's intermediate values and returns its value, or is pruned when that trial was, and
says so (``repeat_of`` user attribute, ``repeat_of_trial`` tag on its MLflow run). In a
finite space it also queues a configuration that no trial has tried, so that the trials
a repeat saves go to configurations not seen yet.
"""
from __future__ import annotations

from typing import Any

from pipeline.sweep.compat import queue, queued_params


def earlier_trial(trial: Any) -> Any | None:
    """The first complete or pruned trial of the study with ``trial``'s params, or None."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in trial.study.get_trials(deepcopy=False, states=states):
        if t.number != trial.number and t.params == trial.params:
            return t
    return None


def replay(trial: Any, earlier: Any) -> tuple[float, ...]:
    """Give ``trial`` the result of ``earlier`` (same configuration) without training it."""
    import optuna

    trial.set_user_attr("repeat_of", earlier.number)
    if len(trial.study.directions) == 1:  # Optuna keeps intermediate values of single-objective studies only
        for step, value in sorted(earlier.intermediate_values.items()):
            trial.report(value, step)
    if earlier.state == optuna.trial.TrialState.PRUNED:
        raise optuna.TrialPruned(f"pruned, as trial {earlier.number} with the same configuration was")
    return tuple(earlier.values)


def enqueue_untried(trial: Any, space: dict[str, list]) -> dict[str, Any] | None:
    """After a repeat, queue a configuration that no trial of the study has tried yet (None when all have).

    A finite search space only (``space`` maps each param to its choices). The next trial
    takes the queued configuration instead of asking the sampler, so that a sweep of N
    trials over fewer than N configurations gets round to every one of them.
    """
    import itertools
    import random

    trials = trial.study.get_trials(deepcopy=False)
    # a queued (WAITING) trial has no params yet: its configuration is in its queued params
    tried = {tuple(sorted((t.params or queued_params(t)).items())) for t in trials}
    names = sorted(space)
    untried = [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))
               if tuple(zip(names, combo)) not in tried]
    if not untried:
        return None
    choice = random.Random(trial.number).choice(untried)  # reproducible for a given study
    queue(trial.study, choice)
    return choice
