"""The Optuna study of a sweep: opened (or made) knowing what it is, sampled without duplicates,
and left honest when a worker stops.

``open_study`` checks the study's settings (``settings.py``) under a lock on the storage, so
that workers started together agree on them, and gives this worker's sampler its own seed
and the fresh-points rule (``workers.py``). ``retry_trial`` re-queues the trial that a
signal or a lost store interrupted: it is FAIL, and the next worker (or the resumed study)
runs it again, as Optuna does for the trial of a worker whose heartbeat stopped.
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from pipeline.config.studies import SweepConfig
from pipeline.errors import ConfigError, NonFiniteLoss
from pipeline.sweep.compat import failed_trial_logger
from pipeline.sweep.settings import (free_name, record_or_check, refuse_other_settings, stored_settings,
                                     study_directions, study_settings)
from pipeline.sweep.space import grid_space, make_pruner, make_sampler, metric_names
from pipeline.sweep.storage import DEFAULT_STORAGE, holds_studies, make_storage
from pipeline.sweep.trials import close_stale_runs
from pipeline.sweep.workers import FreshPoints
from pipeline.tracking import faults, sweeps
from pipeline.tracking.redact import redact
from pipeline.tracking.stores import sqlite_file, store_init_lock


def _retry_callback(max_retry: int) -> Any:
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def open_study(cfg: SweepConfig, tracking_uri: str, sampler_seed: int) -> Any:
    """The study ``cfg`` names, made with its settings or checked against them."""
    import optuna

    retry = _retry_callback(cfg.max_retry)

    def on_stale(study: Any, frozen_trial: Any) -> None:
        close_stale_runs(tracking_uri, frozen_trial)
        retry(study, frozen_trial)

    url = cfg.storage or DEFAULT_STORAGE
    storage = make_storage(cfg.storage, cfg.heartbeat_interval or None, cfg.grace_period, on_stale)
    if cfg.heartbeat_interval and isinstance(storage, optuna.storages.JournalStorage):
        print(f"note: --storage {url} keeps no heartbeats (Optuna's JournalStorage has none): a worker killed "
              "mid-trial leaves its trial RUNNING; a SQLite or PostgreSQL storage fails and retries it",
              file=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the summary say enough
    quiet_failed_trials()
    sampler = make_sampler(cfg, sampler_seed)
    if cfg.sampler != "grid" and cfg.lr_min is None:  # a finite space: fresh points while there are any
        sampler = FreshPoints(sampler, grid_space(cfg), sampler_seed, lambda: store_init_lock(url, "optuna-sample"))
    wanted = study_settings(cfg)
    with store_init_lock(url, "optuna"):  # workers started together agree on the settings
        try:
            study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=sampler,
                                      pruner=make_pruner(cfg))
        except KeyError:
            study = optuna.create_study(study_name=cfg.study_name, storage=storage, load_if_exists=True,
                                        directions=study_directions(cfg), sampler=sampler, pruner=make_pruner(cfg))
        check_tracked_here(study, storage, tracking_uri)  # both refusals before the settings are written
        record_or_check(study, storage, wanted)
    if study.metric_names != metric_names(cfg):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(cfg))  # Optuna's plots and optuna-dashboard name the objective
    return study


def _existing(cfg: SweepConfig) -> tuple[Any, Any] | None:
    """(study, storage) of ``cfg`` as it stands, read without writing to the storage or making it; None if none."""
    import optuna

    if not holds_studies(cfg.storage or DEFAULT_STORAGE):
        return None
    storage = make_storage(cfg.storage, None, must_exist=True)
    if cfg.study_name not in optuna.study.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=cfg.study_name, storage=storage), storage


def load_existing(cfg: SweepConfig) -> Any | None:
    """The study of ``cfg`` as it stands (read only), or None if there is none."""
    found = _existing(cfg)
    return found and found[0]


def finished_trials(cfg: SweepConfig) -> int:
    """How many trials of the study of ``cfg`` have ended (complete, pruned or failed); 0 without a study."""
    study = load_existing(cfg)
    return 0 if study is None else sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def check_resumable(cfg: SweepConfig, tracking_uri: str) -> None:
    """What ``open_study`` would refuse (other settings, runs in another MLflow store), found without
    writing to the storage and without making it: ``main`` asks before its first stage."""
    found = _existing(cfg)
    if found is None:
        return
    study, storage = found
    check_tracked_here(study, storage, tracking_uri)
    refuse_other_settings(study, storage, stored_settings(study), study_settings(cfg))


def check_tracked_here(study: Any, storage: Any, tracking_uri: str) -> None:
    """Refuse to resume a study whose trials were logged to another MLflow store: its best trial, its
    repeated configurations and its trials table would point at runs that this store does not have.

    The newest trial with a run decides (the runs of a study live in one store). A study made by other
    code, with no ``mlflow_run_id`` on its trials, is not checked."""
    tracked = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("mlflow_run_id")]
    if not tracked:
        return
    newest = tracked[-1]
    run_id = newest.user_attrs["mlflow_run_id"]
    path = sqlite_file(tracking_uri)[0] if tracking_uri.startswith("sqlite") else None
    # a SQLite file that is not there yet holds no run (and stays absent)
    if (path is None or Path(path).exists()) and sweeps.run_exists(tracking_uri, run_id):
        return
    raise ConfigError(f"study {study.study_name!r} cannot be resumed here: trial {newest.number}'s run {run_id} is not "
                      f"in {redact(tracking_uri)} (its trials were logged to another MLflow store, or that run was "
                      f"deleted); give the tracking URI it was logged to, or start a new study with --study-name "
                      f"{free_name(study, storage)} (or another --storage)")


def retry_trial(study: Any, trial: Any, max_retry: int, storage_url: str) -> str | None:
    """Re-queue an interrupted trial; None when done, else the one line that says it was not and how
    to re-queue it by hand (the storage may be what failed)."""
    try:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        _retry_callback(max_retry)(study, frozen)
        return None
    except Exception as err:  # noqa: BLE001 - never let the retry hide why the worker stopped
        return (f"sweep: trial {trial.number} was not queued again ({faults.reason(err)}); queue it with: "
                f"{requeue_command(study.study_name, storage_url, trial.number)}")


def requeue_command(study_name: str, storage_url: str, number: int) -> str:
    """The shell command that re-queues trial ``number`` by hand (the password, if any, hidden)."""
    return (f"python -c \"from pipeline.sweep.study import requeue; requeue({study_name!r}, "
            f"{redact(storage_url)!r}, {number})\"")


def requeue(study_name: str, storage_url: str, number: int) -> None:
    """Queue trial ``number`` of the study again, with its params, as the worker would have."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=make_storage(storage_url, None, must_exist=True))
    _retry_callback(None)(study, study.trials[number])


class _NoTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback, then its value. A diverged trial (the sweep goes
    on) keeps its first line; any other failure stops the worker, which reports it in one line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().endswith("failed with value None."):
            return False
        if record.exc_info:
            keep = isinstance(record.exc_info[1], NonFiniteLoss)
            record.exc_info, record.exc_text = None, None
            return keep
        return True


def quiet_failed_trials() -> None:
    logger = failed_trial_logger()
    if not any(isinstance(f, _NoTraceback) for f in logger.filters):
        logger.addFilter(_NoTraceback())
