"""Config of stage ``diagnose``: is a stalled seed of a capacity run at a local minimum, a kink,
a saddle or on a plateau, and what do its filters look like?
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.fields import THREADS, SystemMetricsFields, TrackingFields, check_fields, opt
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class DiagnoseConfig(SystemMetricsFields, TrackingFields):
    """diagnose: derivatives, verdicts, filter anatomy and the loss landscape of every seed of a capacity run."""

    capacity_run: str | None = opt(None, "the capacity run to diagnose: runs:/<id> or the run id (required)")
    filters: tuple[int, ...] | None = opt(None, "only these filter counts of the run (default: all of them)")
    kernel_sizes: tuple[int, ...] | None = opt(None, "only these kernel sizes of the run (default: all of them)")
    seeds: int | None = opt(None, "only the run's first N seeds of each configuration (default: all)")
    last_epochs: int = opt(50, "L: the closing window of training; a seed whose activation pattern (which window "
                               "is the max, which ReLU is on) still changes in it sits on a kink")
    delta: float = opt(1e-2, "delta: a line search counts as descent when it lowers the objective by more than this")
    radius: float = opt(0.1, "r: how far (Euclidean distance in parameter space) the line searches look")
    long_factor: int = opt(10, "the long run: failed seeds continue for this many times the epochs, lr divided by it")
    pairs: int = opt(3, "landscape: (failed, solved) pairs per configuration whose straight path is drawn")
    slice_points: int = opt(31, "landscape: grid points per axis of the 2D loss slice around a stuck point")
    table: str | None = opt(None, "also write the per-seed table (diagnosis.csv) to this local CSV file")
    threads: int = opt(1, "torch CPU threads (0: torch's default)", within=THREADS)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.capacity_run or not str(self.capacity_run).strip():
            raise ConfigError("--capacity-run is required: the capacity run to diagnose (runs:/<id>)")
        for name in ("filters", "kernel_sizes"):
            v = getattr(self, name)
            if v is not None and (not v or min(v) < 1):
                raise ConfigError(f"--{name.replace('_', '-')} needs positive integers, got {v}")
        if self.seeds is not None and self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.last_epochs < 1:
            raise ConfigError(f"--last-epochs must be >= 1, got {self.last_epochs}")
        if not self.delta > 0 or not self.radius > 0:
            raise ConfigError(f"--delta and --radius must be > 0, got {self.delta} and {self.radius}")
        if self.long_factor < 1:
            raise ConfigError(f"--long-factor must be >= 1, got {self.long_factor}")
        if self.pairs < 0 or self.slice_points < 3:
            raise ConfigError(f"need --pairs >= 0 and --slice-points >= 3, got {self.pairs} and {self.slice_points}")
