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

SQLITE_BUSY_TIMEOUT_S = 120


def store_init_lock(uri: str, purpose: str) -> contextlib.AbstractContextManager[None]:
    """A lock that serialises creating (or migrating) the tables of a database store.

    Workers that start together on an empty store otherwise race to create the same tables
    and the losers fail ("relation already exists"). SQLite: a file lock beside the file.
    PostgreSQL: a session-level advisory lock, which holds across machines. ``purpose`` keeps
    MLflow's and Optuna's locks apart when they share a database.
    """
    if uri.startswith("sqlite:///"):
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

    path = uri[len("sqlite:///"):]
    if path in ("", ":memory:"):
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
    if not uri.startswith("sqlite:///"):
        return
    path = uri[len("sqlite:///"):]
    if path in ("", ":memory:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
