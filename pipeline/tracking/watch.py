"""A watch on a remote tracking store while a stage runs: a server that dies is noticed within
seconds, even in the middle of a long epoch that makes no tracking call.

A daemon thread asks the store whether it answers every ``EVERY_S`` seconds (an MLflow
server's ``/health``; a PostgreSQL server's ``SELECT 1``). After ``MISSES`` answers missed
in a row it records the store as lost (``faults.mark_lost``) and interrupts the main
thread, whose stage run then saves what it has locally (``rescue.py``) and exits 1. Local
SQLite files are not watched: a file does not go away.
"""
from __future__ import annotations

import _thread
import threading
from typing import Any, Callable

from pipeline.tracking import faults
from pipeline.tracking.redact import scrub

EVERY_S = 4.0
MISSES = 2
PROBE_TIMEOUT_S = 4


def _http_probe(uri: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        import requests

        try:
            with requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S) as r:
                return None if r.status_code < 500 else f"/health answered HTTP {r.status_code}"
        except requests.exceptions.RequestException as err:
            return f"no answer from the server ({type(err).__name__})"

    return probe


def _sql_probe(uri: str) -> Callable[[], str | None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from pipeline.tracking.stores import postgres_connect_args

    engine = create_engine(uri, poolclass=NullPool, connect_args=postgres_connect_args(uri, PROBE_TIMEOUT_S))

    def probe() -> str | None:
        try:
            with engine.connect() as con:
                con.execute(text("SELECT 1"))
            return None
        except (SQLAlchemyError, OSError) as err:  # a miss: the watch counts it, and names it when the store is lost
            return scrub(err, uri)

    return probe


def probe_for(uri: str) -> Callable[[], str | None] | None:
    """A function that says why the store does not answer (None when it does), or None for local stores."""
    if uri.startswith(("http://", "https://")):
        return _http_probe(uri)
    if uri.startswith("postgresql"):
        return _sql_probe(uri)
    return None


class StoreWatch:
    """Context manager: watch ``uri`` while the block runs (only in the main thread, only remote stores)."""

    def __init__(self, uri: str):
        self.uri = uri
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StoreWatch":
        probe = probe_for(self.uri)
        if probe is not None and threading.current_thread() is threading.main_thread():
            self._thread = threading.Thread(target=self._run, args=(probe,), name="store-watch", daemon=True)
            self._thread.start()
        return self

    def _run(self, probe: Callable[[], str | None]) -> None:
        misses = 0
        while not self._stop.wait(EVERY_S):
            reason = probe()
            misses = misses + 1 if reason else 0
            if misses >= MISSES and not self._stop.is_set():
                faults.mark_lost(reason or "no answer")
                _thread.interrupt_main()  # the stage run turns this into a rescue, not a KILLED run
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
