"""The Optuna names outside its public API that ``pipeline/sweep/compat.py`` relies on still mean what
it says. A failure here means Optuna changed underneath the sweep: update that module."""
from __future__ import annotations

import logging

import optuna
import pytest

from pipeline.sweep import compat

CHANGED = f"optuna {optuna.__version__} changed: update pipeline/sweep/compat.py"


def test_enqueue_trial_keeps_the_params_in_the_fixed_params_system_attribute():
    study = optuna.create_study()
    study.enqueue_trial({"filters": 3, "kernel_size": 5})  # as other code (or a user) queues a trial
    (waiting,) = study.get_trials(deepcopy=False)
    assert waiting.params == {}, CHANGED  # why the private attribute is read at all
    assert waiting.system_attrs.get(compat.FIXED_PARAMS) == {"filters": 3, "kernel_size": 5}, \
        f"{CHANGED} (FIXED_PARAMS: enqueue_trial no longer stores its params there)"
    assert compat.queued_params(waiting) == {"filters": 3, "kernel_size": 5}


def test_the_sweeps_own_queued_trials_need_no_private_name():
    study = optuna.create_study()
    compat.queue(study, {"filters": 2})
    compat.queue(study, {"filters": 2})  # already waiting: not queued twice
    (waiting,) = study.get_trials()  # a copy
    waiting.system_attrs.clear()  # as if Optuna kept its queue elsewhere: the public fallback still answers
    assert compat.queued_params(waiting) == {"filters": 2}
    trial = study.ask()
    assert trial.suggest_categorical("filters", [1, 2, 3]) == 2  # the queued point is the one the trial gets


def test_a_failed_trial_is_reported_by_the_logger_that_compat_names():
    names = []

    class Record(logging.Handler):
        def emit(self, record):
            if "failed" in record.getMessage():
                names.append(record.name)

    handler = Record()
    logging.getLogger("optuna").addHandler(handler)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quieted = compat.failed_trial_logger().filters[:]  # a sweep run earlier in this process quiets the logger
    compat.failed_trial_logger().filters.clear()
    try:
        study = optuna.create_study()
        study.optimize(lambda t: 1 / 0, n_trials=1, catch=(ZeroDivisionError,))
    finally:
        compat.failed_trial_logger().filters[:] = quieted
        optuna.logging.set_verbosity(before)
        logging.getLogger("optuna").removeHandler(handler)
    assert names and set(names) == {compat.FAILED_TRIAL_LOGGER}, \
        f"{CHANGED} (FAILED_TRIAL_LOGGER: failed trials are now logged by {sorted(set(names))})"


@pytest.mark.parametrize("diverged", [True, False], ids=["diverged", "other-failure"])
def test_a_failed_trial_logs_no_traceback_once_quieted(diverged):
    """A diverged trial keeps its first line (the sweep goes on); any other failure is left to the
    stage's own one-line error."""
    from pipeline.errors import NonFiniteLoss
    from pipeline.sweep.study import quiet_failed_trials

    error = NonFiniteLoss if diverged else ValueError
    quiet_failed_trials()
    seen = []

    class Record(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Record()
    compat.failed_trial_logger().addHandler(handler)
    try:
        def objective(trial):
            raise error("loss is nan")
        optuna.create_study().optimize(objective, n_trials=1, catch=(error,))
    finally:
        compat.failed_trial_logger().removeHandler(handler)
    assert [(r.exc_info, "loss is nan" in r.getMessage()) for r in seen] == ([(None, True)] if diverged else [])
