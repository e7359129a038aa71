"""Opening the MLflow tracking store: every check that can fail happens here, before any work.

The URI must have a known scheme and parse; a database must not hold Optuna's tables and,
when it exists, must take writes; a server must answer. Bad input is a ``ConfigError``
(exit 2); a store that does not answer or is read-only an ``EnvironmentFault`` (exit 1).
HTTP requests to a server get bounded retries (``HTTP_RETRIES``): MLflow's own defaults
retry for about 12 minutes before giving up.
"""
from __future__ import annotations

import os
import re
import sqlite3

from pipeline.errors import ConfigError, EnvironmentFault
from pipeline.tracking.redact import redact, remember
from pipeline.tracking.stores import check_db_url, check_schema, check_writable, enable_wal, open_error, store_init_lock

SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks", "databricks-uc", "uc")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
# At most 3 tries, 2 s of back-off and 5 s per try: a dead server is given up on within ~17 s
# (connection refused: ~2 s). Values set in the environment win.
HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
OPTION = "--tracking-uri"


def scheme_of(uri: str) -> str:
    """'postgresql' for postgresql+psycopg://..., '' for a plain path (a file store)."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def check_tracking_store(uri: str) -> None:
    """Everything about ``uri`` that can be checked without writing to it (a server must answer)."""
    remember(uri)
    scheme = scheme_of(uri)
    if scheme and scheme not in SCHEMES:
        raise ConfigError(f"{OPTION} {redact(uri)}: unknown scheme {scheme!r}; use sqlite:///FILE.db, "
                          "postgresql://USER@HOST/DB, http(s)://HOST:PORT of an MLflow server, or a folder")
    if scheme in DATABASES:
        from sqlalchemy.exc import SQLAlchemyError

        check_db_url(uri, OPTION)
        try:
            check_schema(uri, "MLflow", OPTION)
        except (ConfigError, EnvironmentFault):
            raise
        except (SQLAlchemyError, OSError, ImportError) as err:  # the driver's errors come wrapped in SQLAlchemy's;
            raise open_error(err, uri, "the MLflow tracking store") from None  # ImportError: no driver installed
        check_writable(uri, OPTION)
    elif scheme in ("http", "https"):
        # In the environment, for the whole process and its children (sweep workers): MLflow reads these
        # variables on each request and has no per-client setting. It saves the wait for a dead server:
        # ~17 s instead of MLflow's ~12 minutes of retries. Values the user set win (setdefault).
        for key, value in HTTP_RETRIES.items():
            os.environ.setdefault(key, value)
        problem = probe_server(uri)
        if problem:
            raise EnvironmentFault(f"cannot open the MLflow tracking store {redact(uri)}: {problem}")


def open_tracking_store(uri: str) -> None:
    """Check ``uri``, then create or upgrade a database store, or fail at once in one line."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    check_tracking_store(uri)
    if scheme_of(uri) not in DATABASES:
        return
    try:
        with store_init_lock(uri, "mlflow"):  # workers started together must not race its migrations
            enable_wal(uri)
            mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates/upgrades the tables
    except (OSError, ValueError, sqlite3.Error, SQLAlchemyError, MlflowException, ImportError) as err:
        raise open_error(err, uri, "the MLflow tracking store") from None


def probe_server(uri: str) -> str | None:
    """Why ``uri`` is not an MLflow server that answers, or None. One request, 10 s at most."""
    import requests  # as MLflow's client talks to a server (user:password@ in the URL included)

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=10)
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, ValueError) as err:
        raise ConfigError(f"{OPTION} {redact(uri)}: not a server URL ({redact(err)})") from None
    except requests.exceptions.ConnectionError as err:
        # requests nests the reason three deep; the socket's own words are what helps
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
        return f"no answer ({errno.group(1) if errno else type(err).__name__})"
    except requests.exceptions.RequestException as err:
        return f"no answer ({type(err).__name__})"
    with response:
        if response.status_code in (200, 401, 403):  # an auth layer may guard /health: MLflow will say
            return None
        return f"/health answered HTTP {response.status_code}; is it an MLflow tracking server?"
