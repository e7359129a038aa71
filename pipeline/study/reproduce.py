"""``pipeline reproduce <run id>``: a finished run of train, evaluate, capacity (1D and images),
capacity-pattern or a sweep trial run again from its ``config.json`` (a trial: its params, with its sweep's
``config.json``: ``trial.py``), in a new run tagged ``reproduces=<id>``, and compared with the original:
every metric at every step (but timings: ``TIMINGS``), those of its child runs (a capacity grid's cells), and
the weights of its model.

Same code, data and environment on the CPU: every value is equal, and one line says how many were
compared. Otherwise the first difference (metric, step, both values) and what differs (code, data,
environment: ``identity.differences``) are printed, and the exit status is 1.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.capacity import replication, stage as capacity
from pipeline.config.parsing import build_config
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.config.stages import EvaluateConfig, ReproduceConfig, TrainConfig
from pipeline.config.studies import CapacityConfig, SweepConfig
from pipeline.errors import ConfigError
from pipeline.evaluate import stage as evaluate
from pipeline.study import trial
from pipeline.tracking import identity, reuse as reading, runs, studies
from pipeline.train import stage as train

TIMINGS = re.compile(r"(^ms_per_|_seconds$|^system/)")  # how long it took, and the machine's load: never equal
NOT_REPLAYED = ("tracking_uri", "experiment_name", "table", "register_model", "alias", "storage")  # where results go


@dataclass(frozen=True)
class Comparison:
    original: str
    reproduction: str
    compared: int  # values compared
    first_difference: str | None  # 'metric train_loss, step 3: 0.25 (original) vs 0.26 (reproduction)'
    differs: list[str]  # of code, data, environment

    @property
    def equal(self) -> bool:
        return self.first_difference is None

    def line(self) -> str:
        if self.equal:
            return (f"run {self.original} reproduced exactly by run {self.reproduction}: "
                    f"{self.compared} values compared, all equal")
        why = f"{' and '.join(self.differs)} differ{'s' if len(self.differs) == 1 else ''}" if self.differs else \
            "code, data and environment are the same"
        return f"run {self.reproduction} differs from run {self.original}: first difference: {self.first_difference}; {why}"


def stage_of(run: Any) -> tuple[type, Callable[..., Any]]:
    """The config class and the stage function of a run, from its tags."""
    tags = run.data.tags
    stage = tags.get("stage")
    if stage == "capacity" and tags.get("task") == replication.TASK:
        return PatternCapacityConfig, replication.run
    if stage == trial.STAGE:
        return SweepConfig, functools.partial(trial.rerun, params=run.data.params, tags=tags)
    found = {"train": (TrainConfig, train.run), "evaluate": (EvaluateConfig, evaluate.run),
             "capacity": (CapacityConfig, capacity.run)}.get(stage or "")
    if found is None:
        raise ConfigError(f"reproduce: a {stage or 'untagged'} run cannot be reproduced (train, evaluate, capacity, "
                          "capacity-pattern and sweep-trial runs can)")
    return found


def replayed_config(run_id: str, cls: type, experiment_name: str) -> Any:
    """The run's ``config.json`` as a config of ``cls``, writing into the original's experiment."""
    try:
        recorded = studies.load_dict(run_id, "config.json")
    except studies.read_errors() as err:
        raise ConfigError(f"reproduce: run {run_id} has no readable config.json ({err})") from None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in recorded.items() if k in names and k not in NOT_REPLAYED and v is not None}
    return dataclasses.replace(build_config(cls, values), experiment_name=experiment_name)


def run(cfg: ReproduceConfig, run_id: str, echo: Callable[[str], None] = print) -> Comparison:
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    original = reading.finished_run(run_id)
    cls, stage = stage_of(original)
    # a trial's settings, and what made it (code, data, environment), are its sweep's: the parent run's
    source = original.data.tags[studies.PARENT_TAG] if cls is SweepConfig else run_id
    stage_cfg = replayed_config(source, cls, reading.experiment_name(original.info.experiment_id))
    with identity.first_run_tags({"reproduces": run_id}):
        result = stage(stage_cfg, echo=echo)
    made_by = studies.get_run(source).data.tags
    new = studies.get_run(result.run_id)
    compared, first = compare(run_id, result.run_id)
    return Comparison(run_id, result.run_id, compared, first, identity.differences(made_by, new.data.tags))


def compare(a: str, b: str) -> tuple[int, str | None]:
    """(values compared, the first difference or None): every metric of run ``a`` at every step, those of each of
    its child runs, then the weights."""
    count, first = compare_metrics(a, b, 0)
    if first is None:
        count, first = compare_children(a, b, count)
    return (count, first) if first is not None else compare_weights(a, b, count)


def compare_metrics(a: str, b: str, count: int, where: str = "") -> tuple[int, str | None]:
    """Every metric of run ``a`` at every step against run ``b``'s (``where``: which run, for the message)."""
    theirs = reading.all_curves(b)
    for key, history in reading.all_curves(a).items():
        if TIMINGS.search(key):
            continue
        other = theirs.get(key, [])
        for i, (step, value) in enumerate(history):
            if i >= len(other) or not _same(other[i], (step, value)):
                got = "nothing" if i >= len(other) else f"{other[i][1]!r} at step {other[i][0]}"
                return count, f"{where}metric {key}, step {step}: {value!r} (original) vs {got} (reproduction)"
            count += 1
        if len(other) > len(history):
            return count, f"{where}metric {key}: {len(history)} values (original) vs {len(other)} (reproduction)"
    return count, None


def _same(theirs: tuple[int, float], ours: tuple[int, float]) -> bool:
    """The same step and value, NaN equal to NaN (a diverged run reproduced exactly logs NaN again)."""
    return theirs[0] == ours[0] and (theirs[1] == ours[1] or (math.isnan(theirs[1]) and math.isnan(ours[1])))


def compare_children(a: str, b: str, count: int) -> tuple[int, str | None]:
    """The child runs of ``a`` (a capacity grid's cells) against ``b``'s of the same name, metric by metric."""
    theirs = reading.children(b)
    for name, child in sorted(reading.children(a).items()):
        if name not in theirs:
            return count, f"child run {name!r}: none in the reproduction"
        count, first = compare_metrics(child, theirs[name], count, f"child run {name!r}, ")
        if first is not None:
            return count, first
    return count, None


def compare_weights(a: str, b: str, count: int) -> tuple[int, str | None]:
    import torch

    mine, theirs = reading.model_weights(a), reading.model_weights(b)
    if mine is None:
        return count, None
    for name, tensor in mine.items():
        other = theirs.get(name) if theirs is not None else None
        if other is None or other.shape != tensor.shape or not torch.equal(other, tensor):
            where = "" if other is None or other.shape != tensor.shape else \
                f" (largest difference {(other.double() - tensor.double()).abs().max().item():.3g})"
            return count, f"weights {name}{where}"
        count += tensor.numel()
    return count, None
