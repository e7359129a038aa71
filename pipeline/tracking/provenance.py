"""What a run says about itself: the resolved config (``config.json``), the params that define
the run, and its description, the two lines at the top of its page in the MLflow UI.

Params are only the values that define a run (``parsing.defining_params``), so that the UI's
runs table and compare view show what differs; everything else, settings included, is in
``config.json``, with passwords in URLs hidden.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pipeline.config.parsing import defining_params
from pipeline.tracking import identity
from pipeline.tracking.experiments import NOTE_TAG
from pipeline.tracking.redact import redact, redact_tree
from pipeline.tracking.faults import is_store_fault
from pipeline.tracking.runs import BAD_INPUT_CODES, log_params_safely

def config_dict(cfg: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict, with every password hidden (``redact``)."""
    return redact_tree(dataclasses.asdict(cfg))


def log_config(cfg: Any, **extra: Any) -> None:
    """``config.json`` (every field) and the params that define the run (plus ``extra``, when set),
    and the run's identity tags (``identity.config_tags``)."""
    import mlflow

    mlflow.log_dict(config_dict(cfg), "config.json")
    params = defining_params(cfg)
    params.update({k: str(v) for k, v in extra.items() if v is not None and v != ""})
    log_params_safely(params)
    identity.tag_config(cfg)


def describe(what: str, result: str | None = None, run_id: str | None = None) -> None:
    """The run's description (``mlflow.note.content``, Markdown): what it does, then what came of it."""
    import mlflow

    text = note(what, result)
    if run_id is None:
        mlflow.set_tag(NOTE_TAG, text)
    else:
        mlflow.MlflowClient().set_tag(run_id, NOTE_TAG, text)


def note(what: str, result: str | None = None) -> str:
    """The description's text, with passwords hidden (it may quote a URL the user gave)."""
    return redact(what if result is None else f"{what}\n\n{result}")


def run_settings(run_id: str, echo: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, tags) of a run: its params, completed by its ``config.json`` (which also holds what is
    not a param, such as the data folder). A run that is not in this store, or has no config.json,
    gives what there is, with one line that says what is missing; a store that fails raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.artifacts import load_dict

    try:
        data = mlflow.MlflowClient().get_run(run_id).data
    except MlflowException as err:
        if is_store_fault(err) or err.error_code not in BAD_INPUT_CODES:  # no such run (or no such id), nothing else
            raise
        echo(f"run {run_id} is not in this tracking store: its data options are not inherited; "
             "give --dataset and --data-uri (or --data-dir)")
        return {}, {}
    settings: dict[str, Any] = dict(data.params)
    config = load_dict(f"runs:/{run_id}/config.json")
    if config is None:
        echo(f"run {run_id} has no config.json (logged before it existed): only its params are inherited; "
             "give --data-dir if its data came from a folder")
    else:
        settings.update({k: v for k, v in config.items() if v is not None and k not in settings})
    return settings, dict(data.tags)


def append_description(text: str) -> None:
    """Add ``text`` (Markdown) at the end of the active run's description."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    current = mlflow.MlflowClient().get_run(run_id).data.tags.get(NOTE_TAG, "")
    mlflow.set_tag(NOTE_TAG, redact(f"{current}\n{text}" if current else text))
