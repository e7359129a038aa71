"""Config of stage ``capacity-pattern``: the capacity study on a second, published task
(rom1mouret/exploration: the pattern [1, 1, x, 1] in noise), with that study's settings as defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.fields import THREADS, TORCH_SEED, SystemMetricsFields, TrackingFields, check_fields, opt
from pipeline.errors import ConfigError

VARIANTS = ("both", "trained", "frozen")


@dataclass(frozen=True)
class PatternCapacityConfig(SystemMetricsFields, TrackingFields):
    """capacity-pattern: mean test accuracy and P(accuracy >= success) of the published [1, 1, x, 1] detector."""

    filters: tuple[int, ...] | None = opt((1, 2, 3, 4, 5, 6, 7), "filter counts F, e.g. 1-7 (the published range)")
    seeds: int = opt(500, "seeds per F (seeds first_seed ... first_seed+seeds-1; the published 500 rounds)")
    first_seed: int = opt(0, "first seed: round s starts from torch.manual_seed(s) and random.Random(s)",
                          within=TORCH_SEED)
    variant: str = opt("both", "trained | frozen (the published RandomConv: the conv keeps its initial weights) | both")
    lr: float = opt(0.1, "SGD learning rate (published: 0.1)")
    momentum: float = opt(0.5, "SGD momentum (published: 0.5)")
    steps: int = opt(100, "training steps, each on one fresh negative and one fresh positive (published: 100)")
    test_pairs: int = opt(1000, "fixed test pairs (2 sequences each; published: 1000)")
    test_seed: int = opt(1_000_000, "seed of the fixed test set (outside the training seeds)", within=TORCH_SEED)
    success: float = opt(0.99, "a seed succeeds when its test accuracy is at least this")
    table: str | None = opt(None, "also write the per-seed table to this local CSV file")
    threads: int = opt(1, "torch CPU threads (0: torch's default)", within=THREADS)
    device: str = opt("cpu", "auto | cpu | cuda (training; the data streams are drawn on the CPU)")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.filters or min(self.filters) < 1 or len(set(self.filters)) != len(self.filters):
            raise ConfigError(f"--filters needs distinct positive integers, got {self.filters}")
        if self.seeds < 1 or self.first_seed < 0:
            raise ConfigError(f"need --seeds >= 1 and --first-seed >= 0, got {self.seeds} and {self.first_seed}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"need --lr > 0 and --momentum in [0, 1), got {self.lr} and {self.momentum}")
        if self.steps < 1 or self.test_pairs < 1:
            raise ConfigError(f"need --steps >= 1 and --test-pairs >= 1, got {self.steps} and {self.test_pairs}")
        if self.first_seed <= self.test_seed < self.first_seed + self.seeds:
            raise ConfigError(f"--test-seed {self.test_seed} is one of the training seeds: the test set must be fresh")
        if not 0 < self.success <= 1:
            raise ConfigError(f"--success must be in (0, 1], got {self.success}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
