"""A sweep trial run again, for ``pipeline reproduce``: the trial's point (its run's params) scored by the sweep's
own objective with the sweep's settings (the parent run's ``config.json``), in a run like the trial's (stage
``sweep-trial``, the same tags, params and metrics) that no Optuna study holds.

The trial is an ``optuna.trial.FixedTrial``: it reports nothing and is never pruned, so a trial that the pruner
stopped (KILLED) cannot be reproduced, and ``reproduce`` only takes FINISHED runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pipeline.config.recipes import resolve
from pipeline.config.studies import SweepConfig
from pipeline.tracking import identity, runs, system
from pipeline.tracking.metrics import MetricBuffer

STAGE = "sweep-trial"  # the stage tag of a trial's run (``sweep/trials.py``)
KEPT_TAGS = ("study_name", "trial_number", "objective", "recipe", "dataset", "model", "seed", "filters", "kernel_size")


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    values: tuple[float, ...]


@dataclass
class _Run:
    """What an objective writes to: the ``metrics`` of a trial's run (``sweep.trials.TrialRun`` duck)."""

    metrics: MetricBuffer


def point_of(params: Mapping[str, str]) -> dict[str, Any]:
    """A trial's params as the sampler gave them: integers (filters, kernel sizes) and floats (lr)."""
    def number(text: str) -> int | float:
        try:
            return int(text)
        except ValueError:
            return float(text)

    return {k: number(v) for k, v in params.items()}


def rerun(cfg: SweepConfig, params: Mapping[str, str], tags: Mapping[str, str],
          echo: Callable[[str], None] = print) -> TrialResult:
    """Score the trial with ``params`` (its run's) and ``tags`` again, under ``cfg`` (its sweep's config)."""
    import optuna
    import torch

    from pipeline.sweep.stage import check_objective, default_objective

    cfg = resolve(cfg)
    check_objective(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    point = point_of(params)
    objective = default_objective(cfg)  # builds the data, as the sweep did before its first trial
    given = {k: tags[k] for k in KEPT_TAGS if k in tags}
    # what made the run, as the sweep's parent has it (no identity.key: `main` never reuses this run as a sweep)
    given.update({k: v for k, v in identity.config_tags(cfg).items() if k != identity.KEY})
    name = f"reproduce {tags.get('mlflow.runName', 'trial')}"
    with runs.stage_run(STAGE, run_name=name, tags=given, system_metrics=system.wanted(cfg)) as active:
        runs.log_params_safely(point)
        with MetricBuffer(active.info.run_id) as buffer:
            values = tuple(objective(optuna.trial.FixedTrial(point), _Run(buffer), point))
            buffer.log({"objective_value": values[0]}, step=0)  # as the trial's run ends (``TrialRun.finish``)
        echo(f"trial {tags.get('trial_number', '?')} again: " + ", ".join(f"{v:.6g}" for v in values))
        return TrialResult(active.info.run_id, values)

