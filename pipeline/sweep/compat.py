"""Every Optuna name outside its public API that the sweep relies on, each with why, and what it saves.

``tests/sweep/test_optuna_compat.py`` checks each one against the installed Optuna and fails naming this
module when Optuna changes underneath it.
"""
from __future__ import annotations

import logging
from typing import Any

# ``study.enqueue_trial(params)`` keeps ``params`` in this system attribute until the trial asks for
# them; Optuna has no public reader for a queued trial's params (``FrozenTrial.params`` stays empty
# while it waits). Reading it lets a queued trial count as holding its configuration, so that no
# other worker trains that configuration at the same time. Public fallback: the sweep's own queued
# trials also carry their params in the user attribute ``QUEUED`` (``queue``), which covers every
# trial the sweep queues; only trials queued by other code need the private name.
FIXED_PARAMS = "fixed_params"
QUEUED = "queued_params"

# The logger that reports a failed trial, with its traceback. Optuna offers no public hook on that
# report; a filter on this logger keeps a failure that stops the worker from printing a traceback
# above the stage's one-line error (a filter on the parent "optuna" logger does not see records that
# propagate from children). No public fallback: if Optuna moves the report, tracebacks come back on
# stderr, and the compat test says so.
FAILED_TRIAL_LOGGER = "optuna.study._optimize"


def queue(study: Any, params: dict[str, Any]) -> None:
    """Queue a trial with ``params`` (nothing when a waiting trial already has them)."""
    study.enqueue_trial(params, user_attrs={QUEUED: params}, skip_if_exists=True)


def queued_params(trial: Any) -> dict[str, Any]:
    """The params a waiting trial was queued with ({} for one the sampler fills in)."""
    return trial.user_attrs.get(QUEUED) or trial.system_attrs.get(FIXED_PARAMS) or {}


def failed_trial_logger() -> logging.Logger:
    return logging.getLogger(FAILED_TRIAL_LOGGER)
