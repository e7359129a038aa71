"""Database stores shared by MLflow and Optuna: safe creation and SQLite's WAL mode.

Several workers (processes on one machine, or machines) often start together on a new,
empty store. Creating its tables is serialised here: a file lock beside a SQLite file, an
advisory lock on a PostgreSQL server. SQLite stores run in WAL mode with a long busy
timeout.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import ConfigError, EnvironmentFault
from pipeline.tracking.redact import redact, scrub

SQLITE_BUSY_TIMEOUT_S = 120


def store_init_lock(uri: str, purpose: str) -> contextlib.AbstractContextManager[None]:
    """A lock that serialises creating (or migrating) the tables of a database store.

    Workers that start together on an empty store otherwise race to create the same tables
    and the losers fail ("relation already exists"). SQLite: a file lock beside the file.
    PostgreSQL: a session-level advisory lock, which holds across machines. ``purpose`` keeps
    MLflow's and Optuna's locks apart when they share a database.
    """
    if uri.startswith("sqlite"):
        return sqlite_init_lock(uri)
    if uri.startswith("postgresql"):
        return postgres_init_lock(uri, purpose)
    return contextlib.nullcontext()


def postgres_connect_args(uri: str, timeout_s: int = 5) -> dict[str, Any]:
    """Connect arguments that make an unreachable PostgreSQL server fail in ``timeout_s``."""
    from sqlalchemy.engine import make_url

    driver = make_url(uri).get_driver_name()
    if driver in ("psycopg", "psycopg2"):
        return {"connect_timeout": timeout_s}
    if driver == "pg8000":
        return {"timeout": timeout_s}
    return {}


@contextlib.contextmanager
def postgres_init_lock(uri: str, purpose: str) -> Iterator[None]:
    """Hold ``pg_advisory_lock`` (keyed by ``purpose``) on its own connection for the block."""
    import zlib

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    key = zlib.crc32(f"convnet-pipeline:{purpose}:init".encode())
    engine = create_engine(uri, poolclass=NullPool, connect_args=postgres_connect_args(uri))
    try:
        with engine.connect() as con:
            con.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            con.commit()  # the lock belongs to the session, not to this transaction
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a dropped session has released it already
                    con.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    con.commit()
    finally:
        engine.dispose()


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside a SQLite store (``<file>.lock``) while it is created."""
    import fcntl

    path, _ = sqlite_file(uri)
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def enable_wal(uri: str) -> None:
    """Put a SQLite store in WAL mode (persistent), so several processes can share it."""
    if not uri.startswith("sqlite"):
        return
    path, readonly = sqlite_file(uri)
    if not path or readonly:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


# --------------------------------------------------------------------------- checks before any write
MLFLOW_TABLES = {"experiments", "runs", "metrics", "params"}
OPTUNA_TABLES = {"studies", "trials", "version_info"}
SCHEMAS = {"MLflow": MLFLOW_TABLES, "Optuna": OPTUNA_TABLES}


def sqlite_file(uri: str) -> tuple[str | None, bool]:
    """(the file of a ``sqlite:///`` URL or None in memory, read-only?); ``file:...?mode=ro&uri=true`` too."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    path, readonly = url.database, url.query.get("mode") == "ro"
    if path and str(url.query.get("uri", "")).lower() == "true" and path.startswith("file:"):
        path = path[len("file:"):].split("?")[0]
    return (None if path in (None, ":memory:") else path), readonly


def check_db_url(uri: str, option: str) -> None:
    """A database URL that can be parsed, with a file name (SQLite) and no unencoded '@' in its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except (ArgumentError, ValueError) as err:  # what make_url raises for a string that is not a URL
        raise ConfigError(f"{option} {redact(uri)}: not a database URL ({scrub(err, uri)})") from None
    if url.host and "@" in url.host:
        raise ConfigError(f"{option} {redact(uri)}: the password holds an unencoded '@'; write it as %40, or "
                          "better leave it out of the URL and set PGPASSWORD (or ~/.pgpass)")
    if url.get_backend_name() == "sqlite" and sqlite_file(uri)[0] == "":
        raise ConfigError(f"{option} {redact(uri)}: no file name; use sqlite:///FILE.db")


def table_names(uri: str, option: str) -> set[str]:
    """The tables of an existing database store, read without writing (empty if it does not exist yet)."""
    if uri.startswith("sqlite"):
        path, _ = sqlite_file(uri)
        if not path or not Path(path).exists():
            return set()
        if Path(path).is_dir():
            raise ConfigError(f"{option} {redact(uri)}: {path} is a folder, not a database file")
        try:
            con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
            try:
                return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"{option} {redact(uri)}: {path} is not a SQLite database ({err})") from None
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    engine = create_engine(uri, poolclass=NullPool, connect_args=postgres_connect_args(uri))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def check_schema(uri: str, own: str, option: str) -> set[str]:
    """Refuse a database that holds the other tool's tables (MLflow's or Optuna's), before writing to
    it; returns its tables."""
    tables = table_names(uri, option)
    for tool, marks in SCHEMAS.items():
        if tool != own and len(marks & tables) >= 2:
            raise ConfigError(f"{option} {redact(uri)} holds {tool}'s tables ({', '.join(sorted(marks & tables))}); "
                              f"give {own} a database of its own")
    return tables


def check_writable(uri: str, option: str) -> None:
    """An existing SQLite store must take writes: a read-only one fails here, before any work (exit 1).
    Other databases are not files here (``postgresql://u@h/pipeline`` names no local ``pipeline``)."""
    if not uri.startswith("sqlite"):
        return
    path, readonly = sqlite_file(uri)
    if path and Path(path).exists():
        problem = "opened read-only (mode=ro)" if readonly else None
        if problem is None:
            try:
                con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
                try:
                    con.execute("BEGIN IMMEDIATE")  # takes the write lock; nothing is written
                    con.rollback()
                finally:
                    con.close()
            except sqlite3.Error as err:
                problem = str(err)
        if problem:
            raise EnvironmentFault(f"{option} {redact(uri)} cannot be written to ({problem}); give a writable store")


def open_error(err: BaseException, uri: str, what: str) -> Exception:
    """The one-line error for a store that failed to open: bad input (exit 2) or environment (exit 1)."""
    reason = scrub(err, uri)
    text = reason.lower()
    message = f"cannot open {what} {redact(uri)}: {reason}"
    if any(s in text for s in ("authentication failed", "does not exist", "no password supplied",
                               "unable to open database file", "no such file", "invalid")):
        return ConfigError(message)
    return EnvironmentFault(message)
