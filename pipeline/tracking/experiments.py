"""The experiment the stages write to, and run names: what the MLflow UI opens on.

MLflow 3 treats an experiment without an ``mlflow.experimentKind`` tag as a GenAI
experiment and opens it on an empty traces page. The stages' experiment (``convnet-study``
unless ``--experiment-name`` or ``$MLFLOW_EXPERIMENT_NAME`` says otherwise) is created with
the kind ``custom_model_development`` and a description, so the UI opens on its runs table;
an experiment made by someone else (``mlflow run --experiment-name``, ``Default``) gets the
same tags when a stage first writes to it. Run names are short and unique within it.
"""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

from pipeline.errors import ConfigError
from pipeline.tracking.faults import is_store_fault

DEFAULT_EXPERIMENT = "convnet-study"
KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # what the UI shows as the description of a run or an experiment
DESCRIPTION = """\
How small ConvNets learn, in runs: the course lab's 1D detector (does it reach the 0, +1, 0
detector, and are its stalls local minima?), its capacity study over filters x kernel size, Optuna sweeps, and the image labs.

Start with the run named **main**: its description tells the study's result, and its
figures compare the runs under it. Group the runs table by the tags `stage`, `filters`,
`kernel_size` or `seed`; the `filters` image of a train run has a step slider (step = epoch).
"""


def experiment_name(explicit: str | None) -> str | None:
    """The experiment to write to: ``--experiment-name``, else MLflow's environment variables, else convnet-study.

    None means "MLflow's choice" ($MLFLOW_EXPERIMENT_ID).
    """
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return None
    return DEFAULT_EXPERIMENT


def use_experiment(name: str | None) -> str:
    """Make the experiment ``name`` (created, tagged, if new) the active one; returns its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    if name is None:  # $MLFLOW_EXPERIMENT_ID names it (experiment_name)
        experiment_id = os.environ["MLFLOW_EXPERIMENT_ID"]
        try:
            client.get_experiment(experiment_id)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or is_store_fault(err):
                raise
            raise ConfigError(f"MLFLOW_EXPERIMENT_ID={experiment_id}: no such experiment in this store; unset it, "
                              "or give --experiment-name") from None
    else:
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                experiment_id = client.create_experiment(name, tags={KIND_TAG: KIND, NOTE_TAG: DESCRIPTION})
            except MlflowException:  # another worker created it a moment ago
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = found.experiment_id
        before = os.environ.get("MLFLOW_EXPERIMENT_ID")
        mlflow.set_experiment(experiment_id=experiment_id)
        # set_experiment also exports $MLFLOW_EXPERIMENT_ID: it would read as the user's choice in the
        # next configure() (another store, in tests) and in every subprocess (`mlflow run`, workers)
        if before is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = before
    tag_experiment(experiment_id)
    return experiment_id


def tag_experiment(experiment_id: str) -> None:
    """Give an experiment the kind and description it lacks (one read when it has them)."""
    import mlflow

    client = mlflow.MlflowClient()
    tags = client.get_experiment(experiment_id).tags
    if KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    if not tags.get(NOTE_TAG):
        client.set_experiment_tag(experiment_id, NOTE_TAG, DESCRIPTION)


def current_experiment_id() -> str:
    """The experiment a run started now lands in: the active run's, the one `mlflow run` made, or the active one."""
    import mlflow

    from pipeline.tracking.compat import active_experiment_id

    run = mlflow.active_run()
    if run is not None:
        return run.info.experiment_id
    if os.environ.get("MLFLOW_RUN_ID"):
        return mlflow.MlflowClient().get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id
    return active_experiment_id()


def unique_run_name(name: str, experiment_id: str, client: Any = None, guess: int | None = None) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... when an active run of the experiment has it already.

    The ``guess``-th name is tried first, in one query that finds no run when it is free: a study's children guess
    their parent's number (``capacity F4 k5 (3)`` under ``capacity F1–8 × k3,5,7 (3)``), where finding the lowest
    free number reads every run of that name with its data (in a long-used experiment, every earlier grid's)."""
    import mlflow

    client = client or mlflow.MlflowClient()
    first = numbered(name, guess or 1)
    exact = guess is not None and not re.search(r"['\\]", first)  # a quote or a backslash: the search below
    if exact and not client.search_runs([experiment_id], filter_string=f"attributes.run_name = '{first}'",
                                        max_results=1):
        return first
    prefix = re.split(r"['\\%_]", name, maxsplit=1)[0]  # LIKE's wildcards and quotes: compare the rest below
    taken = {r.info.run_name for r in client.search_runs(
        [experiment_id], filter_string=f"attributes.run_name LIKE '{prefix}%'", max_results=5000)}
    i = 1
    while numbered(name, i) in taken:
        i += 1
    return numbered(name, i)


def numbered(name: str, number: int) -> str:
    """The ``number``-th run of ``name``: ``name`` itself, then ``name (2)``, ..."""
    return name if number == 1 else f"{name} ({number})"


def run_number(run_name: str) -> int:
    """Which run of its name ``run_name`` is (``numbered``'s inverse): 3 for ``capacity F4 k5 (3)``, else 1."""
    found = re.search(r" \((\d+)\)$", run_name or "")
    return int(found.group(1)) if found else 1


def shape_label(filters: Sequence, kernel_size: Sequence) -> str:
    """'F4 k5', 'F6,16 k5' (one kernel size for every layer), 'F6,16 k5,3': the model's shape in run names."""
    ks = list(kernel_size)[:1] if len(set(kernel_size)) == 1 else kernel_size
    return f"F{','.join(map(str, filters))} k{','.join(map(str, ks))}"
