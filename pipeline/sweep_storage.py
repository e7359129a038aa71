"""Optuna storage for sweeps: a local SQLite file by default, PostgreSQL for many machines.

Both are RDB storages with heartbeats, so a worker that dies mid-trial has its trial failed
(after the grace period) and re-queued by whichever worker looks next. SQLite runs in WAL
mode with a long busy timeout, so several worker processes on one machine can share it
without "database is locked" failures.
"""
from __future__ import annotations

import contextlib
import random
import time
import warnings
from typing import Any, Callable

from pipeline.config import ConfigError
from pipeline.tracking import SQLITE_BUSY_TIMEOUT_S, enable_wal, sqlite_init_lock

DEFAULT_STORAGE = "sqlite:///optuna.db"


def redact(url: str) -> str:
    """The storage URL without its password (safe to print and to tag runs with)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL (e.g. a journal path)
        return url


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - no URL, no password
        return None


def make_storage(
    url: str | None,
    heartbeat_interval: int | None = 10,
    grace_period: int | None = None,
    on_stale: Callable[[Any, Any], None] | None = None,
) -> Any:
    """An Optuna storage for ``url`` (default ``sqlite:///optuna.db``); fails fast if unreachable."""
    import optuna
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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
    lock = contextlib.nullcontext()
    if url.startswith("sqlite:///"):
        lock = sqlite_init_lock(url)  # held while the tables are created: local workers start together
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
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
                with lock, warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, relied upon here
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    if url.startswith("sqlite:///"):
                        enable_wal(url)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
            except IntegrityError:
                # Workers that start together on an empty database race to create Optuna's
                # tables; the losers find them made a moment later.
                if attempt == 4:
                    raise
                time.sleep(0.5 + random.random())
        raise AssertionError("unreachable")
    except (SQLAlchemyError, ImportError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = reason.replace(url, redact(url))
        secret = _password(url)
        if secret:
            reason = reason.replace(secret, "***")
        raise ConfigError(f"cannot open Optuna storage {redact(url)}: {reason[:200]}") from None
