"""Every private name of MLflow that the pipeline uses, and only here.

Each use says why no public API serves, what it saves, and what happens without it (the
public fallback). ``tests/tracking/test_mlflow_compat.py`` fails, naming MLflow and this module,
when an MLflow release renames or removes one of them.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

# (module, name) of each private MLflow name used below: what test_mlflow_compat checks
PRIVATE_NAMES = (
    ("mlflow.utils.requirements_utils", "_MODULES_TO_PACKAGES"),
    ("mlflow.tracking.fluent", "_get_experiment_id"),
    ("mlflow.tracking.fluent", "_active_experiment_id"),
)


@contextlib.contextmanager
def without_distribution_scan() -> Iterator[None]:
    """Let MLflow check a logged model's requirements against this environment without scanning it first.

    Why private: MLflow checks the requirements twice while it logs a model (when it saves it,
    and when it loads it back to try the input example), each time through a map of every
    importable module to its distribution (``requirements_utils._MODULES_TO_PACKAGES``), built
    once per process by reading the file list of every installed package; no argument of
    ``log_model`` turns the check or the map off. Our requirements are named by their
    distributions (``artifacts.pip_requirements``), whose versions MLflow reads directly, so
    the check needs no map: it gets an empty one for this call.
    Saves: building the map, 0.5 s on an idle machine and 3.7 s measured on the shared 2-core
    CI machine (torch alone lists 15,000 files), in every `pipeline train`.
    Fallback: where MLflow keeps its map under another name, or has built it already, nothing
    changes (MLflow scans, as it would without us).
    """
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is not None:
        yield
        return
    requirements_utils._MODULES_TO_PACKAGES = {}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None  # whoever infers requirements later builds the real map


def active_experiment_id() -> str:
    """The experiment that ``mlflow.start_run`` would use now: ``mlflow.set_experiment``'s, else MLflow's
    environment variables, else the Default experiment ("0").

    Why private: MLflow has ``set_experiment`` but no public getter for the experiment it set,
    short of starting a run to read its experiment (a run in the store for every lookup).
    Saves: a second copy of MLflow's choice in a module global of ours, which could disagree
    with MLflow's (0 ms either way: both are a variable read).
    Fallback: the same resolution from public names, without ``set_experiment``'s choice.
    """
    from mlflow.tracking import fluent

    private = getattr(fluent, "_get_experiment_id", None)
    if callable(private):
        return private()
    import mlflow

    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        found = mlflow.MlflowClient().get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"])
        if found is not None:
            return found.experiment_id
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"


def forget_active_experiment() -> None:
    """Undo ``mlflow.set_experiment`` in this process (tests: the next stage chooses again, in another store).

    Why private: MLflow can set the active experiment but has no public call to unset it.
    Saves: a fresh Python process per test that changes the experiment (about 4 s of imports each).
    Fallback: none is needed where the name is gone; test_mlflow_compat then fails, naming this module.
    """
    from mlflow.tracking import fluent

    if hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None
