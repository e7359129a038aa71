"""The MLflow side of a study stage (``capacity`` on the detector, on images and on the published
pattern task, and ``diagnose``), written once.

A study writes one parent run (its config, an optional description, its tables, figures and
summary metrics) and, for grids, one child run per configuration (metrics and params in one
batch, with per-epoch curves where the study has them). What the parent has computed but not
logged is saved locally if the store goes away (``runs.stage_run``'s ``Keep``). A stage also
reads a finished run back (``diagnose`` reads its capacity run) through the functions here, so
that no study module imports MLflow.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Mapping

from pipeline.errors import guarded
from pipeline.tracking import artifacts, experiments, faults, provenance, runs, system
from pipeline.tracking.metrics import MetricBuffer, log_batch
from pipeline.tracking.redact import redact
from pipeline.tracking.rescue import Keep

PARENT_TAG, NAME_TAG = "mlflow.parentRunId", "mlflow.runName"  # what MLflow's UI nests and names runs by


@contextlib.contextmanager
def study_run(stage: str, cfg: Any, run_name: str, tags: Mapping[str, Any], keep: Keep | None = None,
              what: str | None = None, run_id: str | None = None) -> Iterator[str]:
    """The parent run of a study, with its ``config.json``, params and (when given) description, sampling system
    metrics unless ``cfg.no_system_metrics``; yields its id. With ``run_id`` (``--resume``) that run is continued,
    and has its config already."""
    with runs.stage_run(stage, run_name=run_name, tags=tags, keep=keep, run_id=run_id,
                        system_metrics=system.wanted(cfg)) as parent:
        if run_id is None:
            provenance.log_config(cfg)
        if what is not None:
            provenance.describe(what)
        yield parent.info.run_id


def log_child(stage: str, run_name: str, tags: Mapping[str, Any], metrics: Mapping[str, float],
              params: Mapping[str, Any], description: tuple[str, str] | None = None,
              curves: Iterable[tuple[int, Mapping[str, float]]] = ()) -> None:
    """One child run of a study, nested under the active run: metrics at step 0 and params in one batch,
    the ``(what, result)`` description when given, and ``curves`` as (step, metrics) pairs.

    In four calls to the store (its name checked, the run created with every tag, one batch, its end)
    where ``runs.stage_run`` takes six: a grid logs dozens of children, at ~20 ms per SQLite call.
    Its tags are those ``stage_run`` gives a nested run (MLflow's context tags, ``stage``,
    ``git_commit``); it ends FINISHED, FAILED (tagged with the error) or KILLED, as a stage's run does.
    """
    import mlflow

    client = mlflow.MlflowClient()
    with guarded() as guard:  # held while the child is created and ended: a signal then had left it RUNNING
        run_id = _create_child(client, stage, run_name, tags, description)
        status = "FAILED"
        try:
            with guard.released():
                log_batch(run_id, metrics, {k: redact(v) for k, v in params.items()})  # passwords hidden
                curves = list(curves)
                if curves:
                    with MetricBuffer(run_id) as buffer:
                        for step, values in curves:
                            buffer.log(values, step=step)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED" if faults.lost() is None else "FAILED"
            raise
        except BaseException as err:
            if faults.is_store_fault(err):
                faults.mark_lost(faults.reason(err))  # the parent's stage_run saves what it holds
            else:
                runs.best_effort(client.set_tag, run_id, "error", faults.describe(err)[1].removeprefix("Error: ")[:500])
            raise
        finally:
            if faults.lost():  # as stage_run ends its run: one try, and a store that is really gone is only noted
                with runs.no_retries():
                    runs.best_effort(client.set_terminated, run_id, status)
            else:
                faults.retry_locked(client.set_terminated, run_id, status)


def _create_child(client: Any, stage: str, run_name: str, tags: Mapping[str, Any],
                  description: tuple[str, str] | None) -> str:
    """A RUNNING child of the active run with a name unique in its experiment and every tag; its id."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags  # what mlflow.start_run adds: user, source

    parent = mlflow.active_run()
    name = experiments.unique_run_name(redact(run_name), parent.info.experiment_id, client,
                                       guess=experiments.run_number(parent.info.run_name))
    commit = runs.git_commit()
    given = {"stage": stage, **({"git_commit": commit} if commit else {}),
             **{k: redact(v) for k, v in tags.items() if v is not None}}
    if description is not None:
        given[experiments.NOTE_TAG] = provenance.note(*description)
    given.update({PARENT_TAG: parent.info.run_id, NAME_TAG: name})
    run = faults.retry_locked(client.create_run, parent.info.experiment_id,
                              tags={k: str(v) for k, v in resolve_tags(given).items()}, run_name=name)
    return run.info.run_id


def log_results(tables: Mapping[str, Any], figures: Mapping[str, Callable[[], Any]],
                metrics: Mapping[str, float]) -> None:
    """The parent run's results: CSV tables and figures by artifact path (each figure drawn when it is
    logged, then closed), then its summary metrics in one call."""
    import mlflow

    for path, table in tables.items():
        artifacts.log_table(table, path)
    for path, draw in figures.items():
        artifacts.log_figure(draw(), path)
    mlflow.log_metrics(dict(metrics))


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    """A JSON artifact of the active run (the caller hides passwords, e.g. ``provenance.config_dict``)."""
    import mlflow

    mlflow.log_dict(dict(data), artifact_file)


def set_tag(key: str, value: Any) -> None:
    """A tag of the active run (the study's parent between its children)."""
    import mlflow

    mlflow.set_tag(key, value)


# --------------------------------------------------------------------------- reading a finished run
def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a run or its artifacts raises when it is not there or not readable: MLflow's own
    error (no such run, no such artifact), a file or connection error, a malformed file."""
    from mlflow.exceptions import MlflowException

    return MlflowException, OSError, ValueError


def get_run(run_id: str) -> Any:
    """The run (info, data.tags, ...) with this id in the current store; raises one of ``read_errors()``."""
    import mlflow

    return mlflow.MlflowClient().get_run(run_id)


def load_dict(run_id: str, artifact_file: str) -> dict:
    """A JSON artifact of a run; raises one of ``read_errors()``."""
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact_file}")


def load_table(run_id: str, artifact_file: str) -> Any:
    """A CSV artifact of a run as a pandas table; raises one of ``read_errors()``."""
    import mlflow
    import pandas as pd

    return pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{artifact_file}"))
