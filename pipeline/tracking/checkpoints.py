"""Checkpoints of long stages, and the runs that they continue.

A checkpoint is one ``torch.save`` file, written atomically (a temporary file, then a
rename) and logged as the run's artifact ``checkpoints/last.pt``; when the tracking store
is lost, the stage's rescue folder gets it as ``checkpoint.pt`` (``Keep``). ``--resume``
takes a run id or such a folder: ``load`` returns the run to continue and the checkpoint,
and refuses a FINISHED run (a finished run is never changed).
"""
from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.tracking import faults
from pipeline.tracking.redact import scrub

ARTIFACT_DIR = "checkpoints"
FILE = "last.pt"
RESCUE_FILE = "checkpoint.pt"  # what ``rescue.save`` writes for a ``Keep`` item named "checkpoint"


def random_states() -> dict[str, Any]:
    """Every global random state: torch CPU and CUDA, NumPy, Python."""
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_random_states(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpoint:
    """The latest state of a stage (a dict of tensors, numbers and configs); ``save(path)`` writes it atomically."""

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def save(self, path: Path) -> None:
        import torch

        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(self.state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def kept_config(cfg: Any) -> Any:
    """The stage's config as its checkpoint keeps it: without ``--resume``, and without the tracking URI,
    which may hold a password (``torch.save`` writes the config as it is; the resuming command gives its own)."""
    return dataclasses.replace(cfg, resume=None, tracking_uri=None)


def resumed_config(state: dict[str, Any], cfg: Any) -> Any:
    """The checkpoint's config, run with this command's ``--resume``, tracking URI and experiment, and the settings
    of how it runs that the command gives (``--table``, ``--threads``, ``--data-dir``, ...). An option that would
    change what the run is (``--filters 7`` on a run of 4) is refused in one line; one equal to the run's (a job
    script that repeats its command with ``--resume``) is accepted."""
    from pipeline.config.fields import SETTING
    from pipeline.config.parsing import as_text

    where = {"resume": cfg.resume, "tracking_uri": cfg.tracking_uri, "experiment_name": cfg.experiment_name}
    bare = type(cfg)(**where)  # what the command holds when it gives nothing but these
    saved = state["config"]
    given = [f for f in dataclasses.fields(cfg)
             if f.name not in where and getattr(cfg, f.name) != getattr(bare, f.name)]
    changed = [f.name for f in given if f.metadata.get("param", True) is not SETTING
               and getattr(cfg, f.name) != getattr(saved, f.name, None)]
    if changed:
        flags = ", ".join(f"--{name.replace('_', '-')} {as_text(getattr(cfg, name))}" for name in changed)
        raise ConfigError(f"{flags}: --resume continues the run with the settings it started with "
                          f"({', '.join(f'{n} {as_text(getattr(saved, n, None))}' for n in changed)}); drop them, "
                          "or start a new run without --resume")
    settings = {f.name: getattr(cfg, f.name) for f in given if f.metadata.get("param", True) is SETTING}
    return dataclasses.replace(saved, **where, **settings)


def log(state: dict[str, Any], run_id: str) -> None:
    """Write the checkpoint atomically and log it as ``checkpoints/last.pt`` of ``run_id`` (skipped when the
    store is lost: the stage's rescue folder keeps it)."""
    import mlflow

    if faults.lost():
        return
    with tempfile.TemporaryDirectory(prefix="pipeline-checkpoint-") as folder:
        path = Path(folder) / FILE
        Checkpoint(state).save(path)
        faults.retry_locked(mlflow.MlflowClient().log_artifact, run_id, str(path), ARTIFACT_DIR)


def load(resume: str, stage: str) -> tuple[str, dict[str, Any]]:
    """(run id, checkpoint) of ``--resume``: a run id, or a rescue folder holding ``checkpoint.pt``."""
    import torch

    folder = Path(resume).expanduser()
    if folder.is_dir():
        path = folder / RESCUE_FILE
        if not path.is_file():
            raise ConfigError(f"--resume {resume}: the folder holds no {RESCUE_FILE}")
        state = torch.load(path, weights_only=False)
    else:
        state = torch.load(_download(resume, stage), weights_only=False)
    if state.get("stage") != stage:
        raise ConfigError(f"--resume {resume}: a checkpoint of `pipeline {state.get('stage')}`, not of {stage}")
    check_resumable(state["run_id"], stage)
    return state["run_id"], state


def check_resumable(run_id: str, stage: str) -> None:
    """A run that ``--resume`` may continue: there, and not FINISHED (nor deleted)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        if faults.is_store_fault(err):
            raise
        raise ConfigError(f"--resume {run_id}: no such run ({scrub(err)})") from None
    if run.info.lifecycle_stage != "active" or run.info.status == "FINISHED":
        state = run.info.status if run.info.lifecycle_stage == "active" else "deleted"
        raise ConfigError(f"--resume {run_id}: the run is {state}, and a finished run is never changed; "
                          f"start a new one with `pipeline {stage}`")


def _download(run_id: str, stage: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    check_resumable(run_id, stage)
    try:
        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/{FILE}",
                                                   dst_path=tempfile.mkdtemp(prefix="pipeline-resume-"))
    except (MlflowException, OSError) as err:
        if faults.is_store_fault(err):
            raise
        raise ConfigError(f"--resume {run_id}: the run has no checkpoint ({ARTIFACT_DIR}/{FILE}) to continue "
                          "from; start it again") from None


def resume_command(stage: str, run_id: str) -> str:
    return f"pipeline {stage} --resume {run_id}"
