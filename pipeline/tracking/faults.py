"""What an exception means for the user: its exit status and its one line (passwords hidden).

Exit 2: bad input (``ConfigError``). Exit 1: the environment failed: a store that stopped
answering, a read-only or full disk (``EnvironmentFault``, and the errors that MLflow,
Optuna, SQLAlchemy and requests raise for these). Exit 128 + N: signal N. Anything else is
a defect, reported in one line with a pointer to ``--debug``.

``mark_lost`` records that the tracking store is gone, so that no further call waits on
it (ending runs, flushing metrics) and the stage saves what it has locally instead.
"""
from __future__ import annotations

import errno
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from pipeline.errors import CheckFailed, ConfigError, EnvironmentFault, Interrupted
from pipeline.tracking.redact import redact, scrub

ENV_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EDQUOT, errno.ENOMEM}
# Why the tracking store is gone (empty while it answers). Process-wide because the store is: a
# process writes to one tracking store, and every caller that would wait on it (MetricBuffer's
# flushes, the end of each nested run, a sweep's trials) must know at once, without a handle
# passed through every call. It saves a wait of each later call: ~17 s of bounded retries per
# call to a dead server (connect.HTTP_RETRIES), and SQLite's 20 s busy wait. stage_run resets it.
_LOST: list[str] = []


class StoreLost(EnvironmentFault):
    """The tracking store stopped answering in the middle of a stage."""


def mark_lost(reason: str) -> None:
    if not _LOST:
        _LOST.append(reason)


def lost() -> str | None:
    """Why the tracking store is gone, or None while it answers."""
    return _LOST[0] if _LOST else None


def reset_lost() -> None:
    _LOST.clear()


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _instance(err: BaseException, module: str, name: str) -> bool:
    """isinstance(err, module.name), without importing a module that nothing has imported."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod else None
    return cls is not None and isinstance(err, cls)


def _one_store_fault(err: BaseException) -> bool:
    if isinstance(err, EnvironmentFault):
        return True
    if isinstance(err, OSError) and (err.errno in ENV_ERRNOS or _instance(err, "requests", "RequestException")):
        return True
    if any(_instance(err, m, n) for m, n in (
            ("sqlite3", "OperationalError"), ("sqlalchemy.exc", "OperationalError"),
            ("sqlalchemy.exc", "InterfaceError"), ("optuna.exceptions", "StorageInternalError"),
            ("urllib3.exceptions", "HTTPError"), ("psycopg", "OperationalError"),
            ("botocore.exceptions", "HTTPClientError"))):  # an S3 artifact store that does not answer
        return True
    if _instance(err, "mlflow.exceptions", "MlflowException"):
        text = str(err)
        server_error = _instance(err, "mlflow.exceptions", "RestException") and err.get_http_status_code() >= 500
        return ("failed with exception" in text or server_error or "readonly database" in text
                or re.search(r"error code 5\d\d", text) is not None)
    return False


LOCK_RETRY_S = 60.0  # how long a busy SQLite store is waited for, over MLflow's 20 s per statement


def is_locked(err: BaseException) -> bool:
    """A SQLite store that is busy: another process holds its write lock, or this connection's read
    snapshot went stale under WAL (which SQLite reports at once, without waiting)."""
    return any("database is locked" in str(e) for e in _chain(err))


# where "database is locked" surfaces: sqlite3's error, SQLAlchemy's wrapping of it, MLflow's and Optuna's of that
LOCK_CARRIERS = (("sqlite3", "OperationalError"), ("sqlalchemy.exc", "OperationalError"),
                 ("mlflow.exceptions", "MlflowException"), ("optuna.exceptions", "StorageInternalError"))


def _lock_carriers() -> tuple[type[BaseException], ...]:
    """The classes of ``LOCK_CARRIERS`` among the modules loaded (none imported here)."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in LOCK_CARRIERS)
    return tuple(cls for cls in found if isinstance(cls, type))


def retry_locked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, tried again while a SQLite store is busy (up to ``LOCK_RETRY_S``): a
    busy file is not a lost store. Each try is one transaction, rolled back when it fails."""
    deadline, delay = time.monotonic() + LOCK_RETRY_S, 0.1
    while True:
        try:
            return fn(*args, **kwargs)
        except _lock_carriers() as err:  # anything else is not a busy store: it goes on at once
            if not is_locked(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 2.0)


def is_store_fault(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) means a store or the disk failed, not the input."""
    if isinstance(err, ConfigError):
        return False
    return any(_one_store_fault(e) for e in _chain(err))


def _first_line(err: BaseException) -> str:
    return scrub(err) if str(err).strip() else type(err).__name__


def reason(err: BaseException) -> str:
    """Why a store failed, in a few words: the socket's own words for a server that does not answer."""
    text = _first_line(err)
    if "Max retries exceeded" in text or "Read timed out" in text or "NewConnectionError" in text:
        sock = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
        why = sock.group(1).strip() if sock else ("timed out" if "timed out" in text else "no answer")
        where = re.search(r"host='([^']+)', port=(\d+)", text)
        return f"{where.group(1)}:{where.group(2)}: {why}" if where else why
    return text


def describe(err: BaseException) -> tuple[int, str]:
    """(exit status, the one line for stderr) of an exception that ended a command."""
    if isinstance(err, Interrupted):
        return err.exit_code, f"Error: {err}"
    if isinstance(err, KeyboardInterrupt):
        return 130, f"Error: {Interrupted(2)}"
    if isinstance(err, (ConfigError, EnvironmentFault, CheckFailed)):  # ours: one line already, or its first line
        text = str(err).strip() or type(err).__name__  # whole: it ends with what to do
        return (2 if isinstance(err, ConfigError) else 1), f"Error: {redact(text.splitlines()[0])}"
    if isinstance(err, MemoryError):
        return 1, ("Error: out of memory; use smaller sizes (--n, --batch-size, --filters, --seeds) "
                   "or a machine with more memory")
    if is_store_fault(err):
        text = _first_line(err)
        if "readonly" in text.replace("-", "").replace(" ", ""):
            return 1, f"Error: the store is read-only ({text}); give a writable one"
        return 1, f"Error: a store or the disk failed: {text}"
    if _instance(err, "mlflow.exceptions", "MlflowException"):
        return 1, f"Error: MLflow: {_first_line(err)}"
    if isinstance(err, OSError):
        where = f": {redact(err.filename)}" if err.filename else ""
        return 1, f"Error: {err.strerror or _first_line(err)}{where}"
    return 1, (f"Error: internal error ({type(err).__name__}: {_first_line(err)}); rerun with --debug "
               "(or PIPELINE_DEBUG=1) for the traceback and report it")


def report(err: BaseException, debug: bool) -> int:
    """Print the one line (and with ``debug`` the traceback) of the exception that ended a command; its exit status."""
    code, line = describe(err)
    if debug:
        traceback.print_exception(err)
    print(line, file=sys.stderr)
    return code


def report_thread_error(args: threading.ExceptHookArgs, debug: bool) -> None:
    """A background thread's failure (Optuna's heartbeat when its database goes away, say): one line,
    as for the main thread; the main thread meets the same fault and ends the stage."""
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    if debug:
        traceback.print_exception(args.exc_value)
    where = f" (in the background thread {args.thread.name})" if args.thread is not None else ""
    print(describe(args.exc_value)[1] + where, file=sys.stderr)
