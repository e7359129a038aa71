"""The capacity run that `diagnose` reads: which run it is, whether diagnose can read it, its settings.

Diagnose reads the parent run of ``pipeline capacity`` on the lab's detector. Anything else
is refused in one line: a run of another stage, one configuration's child run, a run that
did not finish, and capacity runs of other tasks (``capacity-pattern``'s published task,
image studies), whose trainings diagnose does not replay.
"""
from __future__ import annotations

import re
import types
from dataclasses import dataclass

import pandas as pd

from pipeline.capacity.outcomes import Settings
from pipeline.errors import ConfigError
from pipeline.tracking import studies

TASK = "detector"  # the lab's task, the only one diagnose replays (capacity runs without a task tag are this)


@dataclass(frozen=True)
class CapacitySource:
    run_id: str
    settings: Settings  # what every seed's training depended on, besides (F, k, seed)
    filters: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    table: pd.DataFrame | None  # the run's tables/seeds.csv (final losses to check the replay against)
    unreadable: str = ""  # why ``table`` is None: the replay then cannot be checked


def run_id_of(uri: str) -> str:
    """``runs:/<id>``, ``runs:/<id>/...`` or a bare run id -> the id."""
    m = re.fullmatch(r"\s*(?:runs:/)?([0-9A-Za-z_-]+)(?:/.*)?\s*", uri)
    if not m:
        raise ConfigError(f"--capacity-run {uri!r}: give runs:/<run id> or a run id")
    return m.group(1)


def read(uri: str, filters=None, kernel_sizes=None, seeds: int | None = None) -> CapacitySource:
    """The capacity run at ``uri``, narrowed to ``filters`` x ``kernel_sizes`` and the first ``seeds`` seeds."""
    run_id = run_id_of(uri)
    try:
        run = studies.get_run(run_id)
    except studies.read_errors() as err:  # MLflow's error, or a file store's: all mean "not in this store"
        raise ConfigError(f"--capacity-run {uri}: no such run in this tracking store "
                          f"({_first_line(err)})") from None
    tags = run.data.tags
    stage = tags.get("stage")
    if stage != "capacity":
        raise ConfigError(f"--capacity-run {uri}: run {run_id} is a {stage or 'untagged'} run, not a capacity run "
                          "(give the parent run of `pipeline capacity`)")
    task = tags.get("task", TASK)
    if task != TASK:
        raise ConfigError(f"--capacity-run {uri}: run {run_id} is a capacity run of task {task!r}; diagnose "
                          f"replays capacity runs of the lab's detector (task {TASK!r}) only")
    if tags.get("model", "detector1d") != "detector1d" or tags.get("dataset", "synthetic") != "synthetic":
        raise ConfigError(f"--capacity-run {uri}: run {run_id} is a capacity study of {tags.get('model')} on "
                          f"{tags.get('dataset')}; diagnose replays the synthetic detector's (task {TASK!r}) only")
    parent = tags.get("mlflow.parentRunId")
    if parent and _stage_of(parent) == "capacity":
        raise ConfigError(f"--capacity-run {uri}: run {run_id} is one configuration of capacity run {parent}; "
                          "give that parent run")
    if run.info.status != "FINISHED":
        raise ConfigError(f"--capacity-run {uri}: run {run_id} ended {run.info.status}; diagnose needs a finished run")
    try:
        cfg = studies.load_dict(run_id, "config.json")
    except studies.read_errors() as err:
        raise ConfigError(f"--capacity-run {uri}: cannot read its config.json "
                          f"({_first_line(err)})") from None
    return _narrow(run_id, cfg, *_seed_table(run_id), filters, kernel_sizes, seeds)


def _narrow(run_id: str, cfg: dict, table, unreadable: str, filters, kernel_sizes, seeds) -> CapacitySource:
    run_filters, run_ks = tuple(cfg["filters"]), tuple(cfg["kernel_sizes"])
    for name, want, have in (("filters", filters, run_filters), ("kernel-sizes", kernel_sizes, run_ks)):
        missing = sorted(set(want or ()) - set(have))
        if missing:
            raise ConfigError(f"--{name} {','.join(map(str, missing))}: not in capacity run {run_id} "
                              f"(it has {','.join(map(str, have))})")
    all_seeds = tuple(range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"]))
    if seeds is not None and seeds > len(all_seeds):
        raise ConfigError(f"--seeds {seeds}: capacity run {run_id} has {len(all_seeds)} seeds per configuration")
    settings = Settings.from_config(types.SimpleNamespace(**{**cfg, "device": "cpu"}))
    return CapacitySource(run_id, settings, tuple(f for f in run_filters if not filters or f in filters),
                          tuple(k for k in run_ks if not kernel_sizes or k in kernel_sizes),
                          all_seeds[: seeds or len(all_seeds)], table, unreadable)


def _stage_of(run_id: str) -> str | None:
    """The stage tag of run ``run_id``; None when it cannot be read (a parent in another store is not a
    capacity parent that diagnose could read either)."""
    try:
        return studies.get_run(run_id).data.tags.get("stage")
    except studies.read_errors():
        return None


def _seed_table(run_id: str) -> tuple[pd.DataFrame | None, str]:
    """The run's tables/seeds.csv and "", or None and why it cannot be read (the replay does not need it;
    only its check against the run's final losses does)."""
    try:
        return studies.load_table(run_id, "tables/seeds.csv"), ""
    except studies.read_errors() as err:
        return None, f"cannot read its tables/seeds.csv ({type(err).__name__}: {_first_line(err)})"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:120]
