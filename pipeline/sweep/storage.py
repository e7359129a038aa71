"""Optuna storage for sweeps: a local SQLite file by default, PostgreSQL for many machines.

Both are RDB storages with heartbeats, so a worker that dies mid-trial has its trial failed
(after the grace period) and re-queued by whichever worker looks next. SQLite runs in WAL
mode with a long busy timeout, so several worker processes on one machine can share it
without "database is locked" failures.
"""
from __future__ import annotations

import random
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import ConfigError, EnvironmentFault
from pipeline.tracking.redact import redact, remember
from pipeline.tracking.stores import (
    OPTUNA_TABLES,
    SQLITE_BUSY_TIMEOUT_S,
    check_db_url,
    check_schema,
    check_writable,
    enable_wal,
    open_error,
    postgres_connect_args,
    sqlite_file,
    store_init_lock,
)

DEFAULT_STORAGE = "sqlite:///optuna.db"
OPTION = "--storage"


def _lost_creation_race(err: Exception) -> bool:
    text = str(err).lower()
    return "already exists" in text or "duplicate" in text or "unique" in text


def check_storage_url(url: str) -> None:
    """A database URL of a kind Optuna stores in, that parses (a journal file or memory are not URLs)."""
    if not (url.startswith("sqlite:///") or url.startswith("postgresql") or url.startswith("mysql")):
        raise ConfigError(
            f"--storage {redact(url)}: use sqlite:///FILE, postgresql://USER@HOST/DB (password in PGPASSWORD "
            "or ~/.pgpass), FILE.journal or memory"
        )
    check_db_url(url, OPTION)


def holds_studies(url: str) -> bool:
    """Whether the storage at ``url`` exists and has Optuna's tables, found without writing to it."""
    if url == "memory":
        return False
    if url.endswith(".journal") and "://" not in url:
        return Path(url).is_file()
    from sqlalchemy.exc import SQLAlchemyError

    check_storage_url(url)
    try:
        return bool(OPTUNA_TABLES & check_schema(url, "Optuna", OPTION))
    except (ConfigError, EnvironmentFault):
        raise
    except (SQLAlchemyError, ImportError, ValueError, OSError, sqlite3.Error) as err:
        raise open_error(err, url, "Optuna storage") from None


def make_storage(
    url: str | None,
    heartbeat_interval: int | None = 10,
    grace_period: int | None = None,
    on_stale: Callable[[Any, Any], None] | None = None,
    must_exist: bool = False,
) -> Any:
    """An Optuna storage for ``url`` (default ``sqlite:///optuna.db``); fails fast if unreachable.

    Checked before anything is written: the URL parses, a journal's folder exists, the
    database holds no MLflow tables and takes writes. ``must_exist`` (study-summary, which
    only reads) refuses a storage that is not there instead of creating an empty one.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    url = url or DEFAULT_STORAGE
    remember(url)
    if url == "memory":  # this process only: no sharing, no heartbeats
        if must_exist:
            raise ConfigError("--storage memory holds nothing outside the sweep that made it; give its file or URL")
        return optuna.storages.InMemoryStorage()
    if url.endswith(".journal") and "://" not in url:
        return _journal(url, must_exist)
    check_storage_url(url)
    if must_exist and url.startswith("sqlite") and not Path(sqlite_file(url)[0]).exists():
        raise ConfigError(f"--storage {url}: no such file; give the storage that the sweep wrote")
    kwargs = {"engine_kwargs": _engine_kwargs(url), **_heartbeats(heartbeat_interval, grace_period, on_stale)}
    try:
        _check_database(url, must_exist)
        return _open_rdb(url, kwargs)
    except (ConfigError, EnvironmentFault):
        raise
    except (SQLAlchemyError, ImportError, ValueError, OSError, sqlite3.Error) as err:
        raise open_error(err, url, "Optuna storage") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite waits for a busy file instead of failing; PostgreSQL gets its connect options and drops
    dead pooled connections."""
    if url.startswith("sqlite:///"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if url.startswith("postgresql"):
        return {"connect_args": postgres_connect_args(url), "pool_pre_ping": True}
    return {}


def _heartbeats(interval: int | None, grace_period: int | None,
                on_stale: Callable[[Any, Any], None] | None) -> dict[str, Any]:
    if not interval:
        return {}
    return {"heartbeat_interval": interval, "grace_period": grace_period or 2 * interval,
            "heartbeat_stale_trial_callback": on_stale}


def _check_database(url: str, must_exist: bool) -> None:
    """No MLflow tables; Optuna's tables for a storage that is only read; writable for one that is written."""
    tables = check_schema(url, "Optuna", OPTION)
    if must_exist and not OPTUNA_TABLES & tables:
        raise ConfigError(f"--storage {redact(url)} holds no Optuna studies; give the storage that the sweep wrote")
    if not must_exist:
        check_writable(url, OPTION)


def _open_rdb(url: str, kwargs: dict[str, Any], attempts: int = 5) -> Any:
    """Optuna's RDB storage, made under the storage's init lock: workers start together, on one machine
    or many, and the first one creates the tables."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with store_init_lock(url, "optuna"), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
                enable_wal(url)
                return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, ProgrammingError) as err:
            # A database with no init lock here (MySQL) can still race on table creation;
            # the losers find the tables made a moment later.
            if attempt == attempts - 1 or not _lost_creation_race(err):
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _journal(path: str, must_exist: bool) -> Any:
    """A journal-file storage; its folder must exist (and the file, for a storage that is only read)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    file = Path(path)
    if must_exist and not file.is_file():
        raise ConfigError(f"--storage {path}: no such journal file; give the storage that the sweep wrote")
    if not file.parent.is_dir():
        raise ConfigError(f"--storage {path}: the folder {file.parent} does not exist; create it or give "
                          "another path")
    if file.is_dir():
        raise ConfigError(f"--storage {path} is a folder; give a file name ending in .journal")
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(file)))
    except OSError as err:
        raise EnvironmentFault(f"cannot open Optuna storage {path}: {err.strerror or err}") from None
