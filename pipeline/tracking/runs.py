"""MLflow runs: the store a stage writes to, the run it writes in, and its params and tags.

Conventions: the tracking URI is ``--tracking-uri``, else
``$MLFLOW_TRACKING_URI``, else MLflow's default ``sqlite:///mlflow.db`` in the working
directory; every stage runs in its own run, nested under the active run when there is one.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any, Iterator, Mapping

from pipeline.errors import ConfigError, debugging, guarded
from pipeline.tracking import experiments, faults, identity, rescue, system
from pipeline.tracking.connect import open_tracking_store
from pipeline.tracking.faults import StoreLost, describe, is_store_fault
from pipeline.tracking.redact import has_secret, redact, scrub
from pipeline.tracking.rescue import Keep
from pipeline.tracking.watch import StoreWatch

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
git_commit = identity.git_commit  # the commit of this checkout (None outside git), as the sweep's trials tag it
BAD_INPUT_CODES = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE")


def resolve_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI in force: explicit > $MLFLOW_TRACKING_URI > sqlite:///mlflow.db."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def load_libraries(tracking_uri: str | None = None) -> None:
    """mlflow, and its SQLAlchemy store where the store in force is a database: 0.5-0.65 s of imports, which a
    stage may load ahead of ``configure`` (the CLI does, with the collector paused). A store that cannot load is
    reported by ``configure``, in one line, when it opens the store."""
    import mlflow  # noqa: F401

    from pipeline.tracking.connect import DATABASES, scheme_of

    if scheme_of(resolve_uri(tracking_uri)) in DATABASES:
        with contextlib.suppress(ImportError):  # named: configure says what is missing, in one line
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def configure(tracking_uri: str | None = None, experiment_name: str | None = None) -> str:
    """Point MLflow at the store (explicit > env > sqlite:///mlflow.db) and pick the experiment
    (``experiments.experiment_name``: explicit > $MLFLOW_EXPERIMENT_NAME > convnet-study).

    The store is checked and opened here (``connect.py``), so that a bad or dead one fails
    before any work, in one line; so is the run that ``mlflow run`` hands over (``MLFLOW_RUN_ID``).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep logs readable
    quiet_library_logs()
    uri = resolve_uri(tracking_uri)
    open_tracking_store(uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.active_run() is None:
        try:
            if os.environ.get("MLFLOW_RUN_ID"):  # `mlflow run` made the run, in the experiment that it chose
                _check_adopted_run()
                experiments.tag_experiment(experiments.current_experiment_id())
            else:
                experiments.use_experiment(experiments.experiment_name(experiment_name))
        except MlflowException as err:  # a deleted experiment, $MLFLOW_EXPERIMENT_ID naming none, ...
            if err.error_code not in BAD_INPUT_CODES or is_store_fault(err):
                raise
            raise ConfigError(f"the MLflow experiment: {scrub(err)}") from None
    return uri


def quiet_library_logs() -> None:
    """MLflow's INFO lines ("Creating initial MLflow database tables...") off stderr, unless debugging
    (``--debug`` or ``PIPELINE_DEBUG=1``): a normal run's stderr holds real warnings only."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.INFO if debugging() else logging.WARNING)


def _start(stage: str, run_name: str | None, nested: bool, run_id: str | None = None,
           system_metrics: bool | None = None) -> Any:
    """``mlflow.start_run`` under a name unique in the experiment (sampling system metrics when asked: ``system.py``);
    an experiment that is not there is bad input. With ``run_id``, that (KILLED or FAILED) run is continued: it is
    RUNNING again."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if system_metrics:
        system.quiet()
    try:
        if run_id:
            return mlflow.start_run(run_id=run_id, nested=nested, log_system_metrics=system_metrics)
        if run_name:  # a name may hold a URL the user gave (evaluate of --data-uri ...)
            run_name = experiments.unique_run_name(redact(run_name), experiments.current_experiment_id())
        return mlflow.start_run(run_name=run_name, nested=nested, log_system_metrics=system_metrics)
    except MlflowException as err:  # e.g. $MLFLOW_EXPERIMENT_ID names no experiment
        if err.error_code not in BAD_INPUT_CODES or is_store_fault(err):
            raise
        raise ConfigError(f"cannot start the {stage} run: {scrub(err)}") from None


def _tag(stage: str, tags: Mapping[str, Any] | None) -> None:
    """The run's tags: its stage, its code version and identity, and the stage's own (passwords hidden)."""
    import mlflow

    commit = identity.git_commit()
    mlflow.set_tags({"stage": stage, **({"git_commit": commit} if commit else {}), **identity.code_tags(),
                     **identity.take_pending(), **{k: redact(v) for k, v in (tags or {}).items() if v is not None}})


@contextlib.contextmanager
def stage_run(stage: str, run_name: str | None = None, tags: Mapping[str, Any] | None = None,
              keep: Keep | None = None, run_id: str | None = None,
              system_metrics: bool | None = None) -> Iterator[Any]:
    """Start the run of one stage (nested under an active run; system metrics: ``system.py``), tag it, end it honestly.

    Under ``mlflow run`` the first stage adopts the run that MLflow created (``MLFLOW_RUN_ID``), which must
    still be RUNNING: a finished run is never changed. The run ends FINISHED, FAILED on an error (tagged with its
    one line), KILLED on a signal (one that comes while the run is created too). If the tracking store stops
    answering (a failed call, or ``StoreWatch`` for a remote store), what ``keep`` holds is saved locally and
    ``StoreLost`` (exit 1) names the folder. With ``run_id`` (``--resume``), that run is continued in place."""
    import mlflow

    nested = mlflow.active_run() is not None
    if not nested:
        faults.reset_lost()
    uri = mlflow.get_tracking_uri()
    with guarded() as guard:  # held while the run is created and ended: a signal then had left it RUNNING
        run = _start(stage, run_name, nested, run_id, system_metrics)
        status = "FAILED"
        try:
            with guard.released(), contextlib.nullcontext() if nested else StoreWatch(uri):
                _tag(stage, tags)
                yield run
            status = "FINISHED"
        except BaseException as err:
            status, instead = _failed(err, stage, run, keep, uri, nested)
            if instead is not None:
                raise instead from None
            raise
        finally:
            if faults.lost():
                with no_retries():
                    best_effort(faults.retry_locked, mlflow.end_run, status=status)
            else:
                faults.retry_locked(mlflow.end_run, status=status)


def _failed(err: BaseException, stage: str, run: Any, keep: Keep | None, uri: str,
            nested: bool) -> tuple[str, BaseException | None]:
    """How a stage's run that raised ``err`` ends (KILLED on a signal, else FAILED, tagged with the error), and
    the error raised in its place: ``StoreLost`` naming the folder where what ``keep`` holds was saved, when the
    store stopped answering (a nested stage without ``keep`` leaves that to the stage around it)."""
    import mlflow

    if isinstance(err, StoreLost):
        return "FAILED", None  # a nested stage saved its results already
    lost = isinstance(err, KeyboardInterrupt) and faults.lost() is not None
    if is_store_fault(err) and not isinstance(err, KeyboardInterrupt):
        faults.mark_lost(faults.reason(err))
        lost = True
    if lost:
        return "FAILED", None if nested and keep is None else _rescued(stage, run, keep, uri)
    if isinstance(err, KeyboardInterrupt):
        return "KILLED", None
    best_effort(mlflow.set_tag, "error", describe(err)[1].removeprefix("Error: ")[:500])
    return "FAILED", None


def _rescued(stage: str, run: Any, keep: Keep | None, uri: str) -> StoreLost:
    reason = faults.lost() or "no answer"
    folder = rescue.save(keep or Keep(), stage, run.info.run_id, uri, reason)
    return StoreLost(f"a store stopped answering during {stage} ({reason}; tracking store {redact(uri)}); "
                     f"what run {run.info.run_id} had not logged is saved in {folder}")


def _check_adopted_run() -> None:
    """``MLFLOW_RUN_ID`` (set by ``mlflow run``) must name a RUNNING run: finished runs are never reopened."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:  # no such run, or not a run id
        if is_store_fault(err):
            raise
        raise ConfigError(f"MLFLOW_RUN_ID={run_id}: no such run in {redact(mlflow.get_tracking_uri())}; "
                          "unset MLFLOW_RUN_ID to start a new run") from None
    if run.info.status != "RUNNING" or run.info.lifecycle_stage != "active":
        state = run.info.status if run.info.lifecycle_stage == "active" else "deleted"
        raise ConfigError(f"MLFLOW_RUN_ID={run_id} is a {state} run, and a finished run is never changed; "
                          "unset MLFLOW_RUN_ID to start a new run")
    leaked = sorted(k for k, v in run.data.params.items() if has_secret(v))
    if leaked:
        print(f"Note: `mlflow run -P` has already recorded a password in param(s) {', '.join(leaked)} of run "
              f"{run_id}; give database passwords through PGPASSWORD or ~/.pgpass instead", file=sys.stderr)


@contextlib.contextmanager
def no_retries() -> Iterator[None]:
    """One quick try for the calls after the store was lost (ending the run, if it came back)."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    old = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def best_effort(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Call ``fn`` on the way out of another failure, which must stay the one that ends the stage; returns
    whether it was done. When it fails, one line on stderr says what was not done, unless the store is
    already lost (then the stage's own message says that its run could not be ended there)."""
    try:
        fn(*args, **kwargs)
        return True
    except Exception as err:  # noqa: BLE001 - any failure here: said in one line, then the real error goes on
        if not faults.lost():
            what = getattr(args[0] if fn is faults.retry_locked else fn, "__name__", "a tracking call")
            print(f"Note: {what} was not done in the tracking store ({faults.reason(err)}); the run's "
                  "status or tags there may be out of date: check it in the MLflow UI", file=sys.stderr)
        return False


def log_params_safely(params: Mapping[str, Any]) -> None:
    """Log params (passwords hidden), never clashing with values already on the run.

    ``mlflow run -P lr=5e-2`` logs ``lr=5e-2`` before our code runs; logging the resolved
    ``0.05`` again would raise. Keys already present are skipped when they mean the same
    value, and logged as ``resolved.<key>`` when they do not.
    """
    import mlflow

    run = mlflow.active_run()
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    out: dict[str, str] = {}
    for key, value in params.items():
        text = "" if value is None else redact(value)
        if key in existing:
            if not _same_value(existing[key], text):
                out[f"resolved.{key}"] = text
            continue
        out[key] = text
    if out:
        mlflow.log_params(out)


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    except ValueError:
        empty = ("", "none", "''", '""')  # `mlflow run` logs an empty -P value as the literal ''
        return a.strip().lower() in empty and b.strip().lower() in empty
