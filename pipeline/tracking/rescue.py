"""What a stage has computed but not yet logged, written to a local folder when the tracking
store goes away: nothing trained is lost because a server died.

A stage fills a ``Keep`` as it goes (its config, its metrics so far, its model, its tables)
and hands it to ``runs.stage_run``; on a lost store ``save`` writes each item in the form
that fits it (JSON, CSV, the model's ``state_dict``) under ``$PIPELINE_RESCUE_DIR``
(default ``./pipeline-rescue``), beside a README that says what happened and how to use them.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from pipeline.tracking.redact import redact, redact_tree

RESCUE_DIR_ENV = "PIPELINE_RESCUE_DIR"
DEFAULT_RESCUE_DIR = "pipeline-rescue"


class Keep(dict):
    """Name -> what to save if the store goes away: a config dataclass, a dict or list (JSON), a
    pandas table or a list of them (CSV), a torch module (its state dict), an object with
    ``save(path)`` (e.g. a data bundle), or a callable that returns one of these."""


def rescue_root() -> Path:
    return Path(os.environ.get(RESCUE_DIR_ENV) or DEFAULT_RESCUE_DIR)


def _write(folder: Path, name: str, item: Any) -> str:
    """Write one kept item; returns the file name."""
    import pandas as pd

    if callable(item) and not hasattr(item, "state_dict") and not hasattr(item, "save"):
        item = item()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    if hasattr(item, "state_dict"):  # a torch module: its weights, loadable with load_state_dict
        import torch

        torch.save(item.state_dict(), folder / f"{name}_state_dict.pt")
        return f"{name}_state_dict.pt"
    if isinstance(item, list) and item and all(isinstance(x, pd.DataFrame) for x in item):
        item = pd.concat(item, ignore_index=True)
    if isinstance(item, pd.DataFrame):
        item.to_csv(folder / f"{name}.csv", index=False)
        return f"{name}.csv"
    if hasattr(item, "save"):
        item.save(folder / f"{name}.pt")
        return f"{name}.pt"
    (folder / f"{name}.json").write_text(json.dumps(redact_tree(item), indent=2, default=str))
    return f"{name}.json"


def save(keep: Keep, stage: str, run_id: str | None, uri: str, reason: str) -> Path:
    """Write everything in ``keep`` to a new folder and return it (the temp dir if cwd is read-only)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stage}-{stamp}-{(run_id or 'norun')[:8]}"
    try:
        folder = rescue_root() / name
        folder.mkdir(parents=True, exist_ok=False)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix=f"pipeline-rescue-{name}-"))
    written, failed = [], []
    for key, item in keep.items():
        try:
            written.append(_write(folder, key, item))
        except (OSError, TypeError, ValueError, RuntimeError, pickle.PicklingError) as err:  # disk, json, torch.save
            # save what can be saved; README.txt names what could not, and the stage fails (StoreLost) anyway
            failed.append(f"{key} ({type(err).__name__}: {redact(err)})")
    lines = [
        f"Stage {stage} lost its MLflow tracking store {redact(uri)} at {stamp}: {redact(reason)}.",
        f"Its run {run_id or '(none)'} could not be ended there; it shows as RUNNING (or FAILED) until the",
        "store answers again. What it had computed but not yet logged is here:",
        *(f"  {w}" for w in written),
        *(f"  not saved: {f}" for f in failed),
        "",
        "A *_state_dict.pt loads with model.load_state_dict(torch.load(path)) into the model that",
        "config.json describes; metrics.json holds the per-epoch values (step = epoch).",
        "When the store is back, run the same command again to log a complete run.",
    ]
    (folder / "README.txt").write_text("\n".join(lines) + "\n")
    return folder
