"""Optuna storage for sweeps: a local SQLite file by default, PostgreSQL for many machines.

Both are RDB storages with heartbeats, so a worker that dies mid-trial has its trial failed
(after the grace period) and re-queued by whichever worker looks next. SQLite runs in WAL
mode with a long busy timeout, so several worker processes on one machine can share it
without "database is locked" failures.
"""
from __future__ import annotations

import random
import time
import warnings
from typing import Any, Callable

from pipeline.errors import ConfigError
from pipeline.tracking.redact import redact, scrub
from pipeline.tracking.stores import SQLITE_BUSY_TIMEOUT_S, enable_wal, postgres_connect_args, store_init_lock

DEFAULT_STORAGE = "sqlite:///optuna.db"


def _lost_creation_race(err: Exception) -> bool:
    text = str(err).lower()
    return "already exists" in text or "duplicate" in text or "unique" in text


def make_storage(
    url: str | None,
    heartbeat_interval: int | None = 10,
    grace_period: int | None = None,
    on_stale: Callable[[Any, Any], None] | None = None,
) -> Any:
    """An Optuna storage for ``url`` (default ``sqlite:///optuna.db``); fails fast if unreachable."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    url = url or DEFAULT_STORAGE
    if url == "memory":  # this process only: no sharing, no heartbeats
        return optuna.storages.InMemoryStorage()
    if url.endswith(".journal") and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if not (url.startswith("sqlite:///") or url.startswith("postgresql") or url.startswith("mysql")):
        raise ConfigError(
            f"--storage {redact(url)}: use sqlite:///FILE, postgresql://USER:PASSWORD@HOST/DB, FILE.journal"
            " or memory"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = postgres_connect_args(url)
        engine_kwargs["pool_pre_ping"] = True
    hb = {}
    if heartbeat_interval:
        hb = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period or 2 * heartbeat_interval,
            "heartbeat_stale_trial_callback": on_stale,
        }
    try:
        for attempt in range(5):
            try:
                # Held while the tables are created: workers start together, on one machine or many.
                with store_init_lock(url, "optuna"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
                    enable_wal(url)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
            except (IntegrityError, ProgrammingError) as err:
                # A database with no init lock here (MySQL) can still race on table creation;
                # the losers find the tables made a moment later.
                if attempt == 4 or not _lost_creation_race(err):
                    raise
                time.sleep(0.5 + random.random())
        raise AssertionError("unreachable")
    except (SQLAlchemyError, ImportError, ValueError) as err:
        raise ConfigError(f"cannot open Optuna storage {redact(url)}: {scrub(err, url)}") from None
