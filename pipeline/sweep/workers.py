"""Workers that share a study never duplicate work.

* **Their own sampler seed.** Worker ``i`` (``--worker-index i``) seeds its sampler with a
  number derived from ``--sampler-seed`` and ``i`` (worker 0 keeps the base seed, so a
  single worker reproduces earlier sweeps); without an index the seed is random. Workers
  started together with one command line therefore do not draw the same trials.
* **Fresh points first.** ``FreshPoints`` wraps the TPE or random sampler of a finite search
  space (filter counts and kernel sizes, no learning-rate range): while some configuration
  has not been tried, a trial never gets one that another trial has completed, is running
  or has claimed. Claims are made under a lock on the storage (a file lock beside a SQLite
  file, an advisory lock on PostgreSQL), so two workers that start a trial at the same
  moment cannot claim the same point. The sampler's own proposal wins whenever it is fresh.
"""
from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any, Callable, Sequence

from pipeline.sweep.compat import queued_params

CLAIM = "fresh_point"  # study user attribute ``fresh_point <trial number>``: the point a trial was given


def claim_key(number: int) -> str:
    """The study user attribute that holds trial ``number``'s claim (a sampler sees a frozen trial,
    which has no public setter, so the claim is the study's)."""
    return f"{CLAIM} {number}"


def worker_seed(base: int, index: int | None) -> int:
    """The sampler seed of worker ``index``: the base seed for worker 0, a derived one for the others,
    a random one when no index is given."""
    import numpy as np

    if index is None:
        return random.SystemRandom().randrange(2**32)
    if index == 0:
        return base
    return int(np.random.SeedSequence([base, index]).generate_state(1)[0])


class FreshPoints:
    """An Optuna sampler that gives each trial a configuration no other trial holds, while one is left."""

    def __init__(self, base: Any, space: dict[str, Sequence[Any]], seed: int,
                 lock: Callable[[], contextlib.AbstractContextManager[None]]):
        self.base = base
        self.names = list(space)
        self.points = [tuple(p) for p in itertools.product(*(space[n] for n in self.names))]
        self.space = space
        self.rng = random.Random(seed)
        self.lock = lock

    # ------------------------------------------------------------------ Optuna's sampler interface
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        if queued_params(trial) or all(n in trial.params for n in self.names):
            return {}  # an enqueued trial or a retry: its point is given
        return {n: CategoricalDistribution(list(self.space[n])) for n in self.names}

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        with self.lock():
            taken = self._taken(study, trial.number)
            point = self._propose(study, trial, search_space)
            if point in taken and len(taken) < len(self.points):
                point = self.rng.choice([p for p in self.points if p not in taken])
            study.set_user_attr(claim_key(trial.number), list(point))
        return dict(zip(self.names, point))

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self.base.sample_independent(study, trial, name, distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    # ------------------------------------------------------------------ helpers
    def _taken(self, study: Any, number: int) -> set[tuple]:
        """Points that a completed, pruned, running or waiting trial holds (failed ones may be retried)."""
        from optuna.trial import TrialState

        taken = set()
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        claims = study.user_attrs
        for t in study.get_trials(deepcopy=False, states=states):
            if t.number == number:
                continue
            queued = queued_params(t)
            if all(n in t.params for n in self.names):
                taken.add(tuple(t.params[n] for n in self.names))
            elif claim_key(t.number) in claims:
                taken.add(tuple(claims[claim_key(t.number)]))
            elif all(n in queued for n in self.names):
                taken.add(tuple(queued[n] for n in self.names))
        return taken

    def _propose(self, study: Any, trial: Any, search_space: dict[str, Any]) -> tuple:
        """The wrapped sampler's own choice (relative where it samples jointly, else per parameter)."""
        relative = self.base.infer_relative_search_space(study, trial)
        point = dict(self.base.sample_relative(study, trial, relative)) if relative else {}
        for n in self.names:
            if n not in point:
                point[n] = self.base.sample_independent(study, trial, n, search_space[n])
        return tuple(point[n] for n in self.names)
