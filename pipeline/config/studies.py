"""Configs of the stages that run many trainings: ``capacity`` (a grid over F x k),
``sweep`` (an Optuna study) and ``study-summary``.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.fields import (
    IMAGES,
    NUMPY_SEED,
    SETTING,
    SYNTHETIC,
    THREADS,
    TORCH_SEED,
    DataFields,
    SystemMetricsFields,
    TrackingFields,
    check_fields,
    opt,
)
from pipeline.config.image_study import ImageStudyFields, is_image_study
from pipeline.errors import ConfigError


SAMPLERS = ("tpe", "grid", "random")
OBJECTIVES = ("success", "accuracy")


@dataclass(frozen=True)
class SweepConfig(SystemMetricsFields, DataFields, TrackingFields):
    """sweep: an Optuna study over filter counts and kernel sizes, one MLflow child run per trial."""

    objective: str = opt("success", "success = P(success) over seeds (synthetic); accuracy = validation accuracy (images)")
    study_name: str = opt("detector-capacity", "Optuna study name; an existing study is resumed (load_if_exists)")
    storage: str | None = opt(None, "Optuna storage: sqlite:///FILE (default sqlite:///optuna.db), postgresql://..., "
                                    "FILE.journal, memory", SETTING)  # tagged, password hidden
    filters: tuple[int, ...] = opt((1, 2, 3, 4, 5, 6, 7, 8), "filter-count choices (per conv layer), a list or range: 1-8")
    kernel_sizes: tuple[int, ...] = opt((3, 5, 7), "odd kernel-size choices (per conv layer), e.g. 3,5,7")
    lr_min: float | None = opt(None, "also search the learning rate, log-uniform from LR_MIN ...")
    lr_max: float | None = opt(None, "... to LR_MAX (both or neither)")
    seeds: int | None = opt(None, "initialisation seeds per trial, trained at once: success 0..S-1 (default 50, as "
                                  "pipeline capacity); accuracy sampler_seed.. (default 1), the value their mean")
    tau: float = opt(0.05, "success objective: a seed succeeds when its final loss < tau and train accuracy is 100%")
    epochs: int | None = opt(None, "training epochs per trial (default: the recipe's)")
    batch_size: int | None = opt(None, "accuracy objective: minibatch size (default: the recipe's)", IMAGES)
    n_trials: int = opt(20, "trials for this worker (several workers add up)")
    timeout: float | None = opt(None, "stop this worker after this many seconds", SETTING)
    sampler: str = opt("tpe", "tpe | grid (exhaustive over the choices, never pruned) | random")
    sampler_seed: int = opt(0, "base seed of the samplers (and of the models in the accuracy objective): worker i's "
                               "sampler seed is derived from it and --worker-index i; without --worker-index the "
                               "sampler's seed is random (the run's tag worker_sampler_seed)", within=NUMPY_SEED)
    pruner: str = opt("median", "median (stop a trial whose value so far is below the median of earlier trials at "
                                "the same epoch) | none")
    pruner_startup_trials: int = opt(5, "median pruner: trials that finish before any trial is pruned (Optuna's "
                                        "default)")
    pruner_warmup_epochs: int = opt(0, "median pruner: epochs a trial runs before it can be pruned (Optuna's default)")
    report_every: int = opt(50, "success objective: report P(success) so far every N epochs (trial.report, "
                                "step = epoch), for pruning and Optuna's intermediate values")
    multi_objective: bool = opt(False, "also minimise the parameter count; report the Pareto front")
    heartbeat_interval: int = opt(10, "seconds between a running trial's heartbeats (0 = off)", SETTING,
                                  within=(0, 86400))
    grace_period: int | None = opt(None, "seconds without heartbeat before a trial is failed and retried (default "
                                         "and minimum: 2x interval)", SETTING, within=(1, 864000))
    worker_index: int | None = opt(None, "this worker's number (0, 1, ...): its sampler seed is derived from "
                                         "--sampler-seed and it, reproducibly; default: a random sampler seed, "
                                         "so that workers started together never propose the same trials",
                                   SETTING, within=(0, 2**31 - 1))
    max_retry: int = opt(3, "times a trial of a dead worker is re-queued", SETTING)
    progress: bool = opt(True, "show a progress bar over trials", SETTING)
    device: str | None = opt(None, "accuracy objective: auto | cpu | cuda (default: the recipe's)", SETTING)
    threads: int = opt(1, "torch CPU threads (0: torch's default)", SETTING, within=THREADS)

    def __post_init__(self) -> None:
        self._check_data()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not self.study_name.strip():
            raise ConfigError("--study-name must not be empty")
        if not self.filters or not self.kernel_sizes:
            raise ConfigError("empty search space: give --filters and --kernel-sizes choices")
        if min(self.filters) < 1:
            raise ConfigError(f"--filters choices must be >= 1, got {self.filters}")
        if min(self.kernel_sizes) < 1 or any(k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"--kernel-sizes must be odd positive integers, got {self.kernel_sizes}")
        if (self.lr_min is None) != (self.lr_max is None):
            raise ConfigError("give both --lr-min and --lr-max, or neither")
        if self.lr_min is not None and not 0 < self.lr_min < self.lr_max:
            raise ConfigError(f"need 0 < --lr-min < --lr-max, got {self.lr_min} and {self.lr_max}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        if self.sampler == "grid" and self.lr_min is not None:
            raise ConfigError("the grid sampler needs finite choices: drop --lr-min/--lr-max")
        if self.pruner not in ("median", "none"):
            raise ConfigError(f"--pruner must be median or none, got {self.pruner!r}")
        if min(self.pruner_startup_trials, self.pruner_warmup_epochs) < 0 or self.report_every < 1:
            raise ConfigError("--pruner-startup-trials and --pruner-warmup-epochs must be >= 0, --report-every >= 1")
        if self.seeds is not None and self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if not 0 < self.tau < 1:
            raise ConfigError(f"--tau must be in (0, 1), got {self.tau}")
        if self.n_trials < 1:
            raise ConfigError(f"--n-trials must be >= 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.grace_period is not None and not self.heartbeat_interval:
            raise ConfigError(f"--grace-period {self.grace_period} needs heartbeats, and --heartbeat-interval 0 "
                              "turns them off; drop one of them")
        if self.grace_period is not None and self.grace_period < 2 * self.heartbeat_interval:
            raise ConfigError(f"--grace-period {self.grace_period} is shorter than 2 x --heartbeat-interval "
                              f"{self.heartbeat_interval}: live trials would be failed as stale and computed "
                              f"twice; give --grace-period {2 * self.heartbeat_interval} or more")
        if self.max_retry < 0:
            raise ConfigError(f"--max-retry must be >= 0, got {self.max_retry}")

    @property
    def seed_count(self) -> int:
        """How many seeds every trial trains (without listing them: sizes are checked on this first)."""
        return self.seeds or (50 if self.objective == "success" else 1)

    @property
    def trial_seeds(self) -> tuple[int, ...]:
        """The seeds of every trial: 0..49 for success, sampler_seed alone for accuracy, unless --seeds."""
        if self.objective == "success":
            return tuple(range(self.seed_count))
        return tuple(range(self.sampler_seed, self.sampler_seed + self.seed_count))


@dataclass(frozen=True)
class StudySummaryConfig:
    """study-summary: print a study's best trials and its trial counts by state."""

    study_name: str = opt("detector-capacity", "Optuna study name")
    storage: str | None = opt(None, "Optuna storage URL (default sqlite:///optuna.db)")
    top: int = opt(5, "how many best trials to print (several objectives: of the Pareto front, best first "
                      "objective first)")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.top < 1:
            raise ConfigError(f"--top must be >= 1, got {self.top}")


@dataclass(frozen=True)
class CapacityConfig(SystemMetricsFields, ImageStudyFields, DataFields, TrackingFields):
    """capacity: P(success) of the synthetic detector, or the test accuracy of an image net (``--dataset``),
    over a grid of filter counts x kernel sizes, many seeds each."""

    filters: tuple[int, ...] | None = opt((1, 2, 3, 4, 5, 6, 7, 8), "filter counts F of the grid, e.g. 1-8 or 3,4")
    kernel_sizes: tuple[int, ...] | None = opt((3, 5, 7), "odd kernel sizes k of the grid, e.g. 3,5,7")
    seeds: int = opt(200, "initialisation seeds per configuration (seeds first_seed ... first_seed+seeds-1)")
    first_seed: int = opt(0, "first torch.manual_seed; a seed s is the same run as `pipeline train --seed s` (images "
                             "with dropout: the same start and minibatches, other masks)",
                          within=TORCH_SEED)
    tau: float = opt(0.05, "success: final training loss < tau and 100% training accuracy (0.02 and 0.1 are reported "
                           "too)", SYNTHETIC)
    # None: the recipe's value, filled in at construction (the synthetic recipe's: 0.05, 0.9, 1e-3, 500)
    lr: float | None = opt(None, "learning rate")
    momentum: float | None = opt(None, "SGD / RMSprop momentum")
    weight_decay: float | None = opt(None, "L2 weight decay")
    epochs: int | None = opt(None, "epochs per training (synthetic: full batch)")
    test_seed: int = opt(2, "numpy seed of the fresh test set for generalisation", SYNTHETIC, within=NUMPY_SEED)
    test_n: int = opt(1000, "number of sequences in the fresh test set", SYNTHETIC)
    table: str | None = opt(None, "also write the per-seed table to this local CSV file", SETTING)
    threads: int | None = opt(None, "CPU threads (default 0 = every core: the 1D study's compiled trainer splits the "
                                    "seeds over them; an image net's, its recipe's)", SETTING,
                              within=THREADS)
    device: str = opt("cpu", "auto | cpu | cuda", SETTING)

    def __post_init__(self) -> None:
        self._check_data()
        if self.threads is None and not is_image_study(self):  # not the recipe's 1: that is for torch's tiny ops
            object.__setattr__(self, "threads", 0)
        for name in ("lr", "momentum", "weight_decay", "epochs", "threads"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.recipe_value(name))
        for name in ("filters", "kernel_sizes"):
            v = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if not v:
                raise ConfigError(f"{flag} needs at least one value, e.g. {'1-8' if name == 'filters' else '3,5,7'}")
            if min(v) < 1:
                raise ConfigError(f"{flag} needs positive integers, got {','.join(map(str, v))}")
            if len(set(v)) != len(v):
                raise ConfigError(f"{flag} lists a value twice: {','.join(map(str, v))}")
        even = [k for k in self.kernel_sizes if k % 2 == 0]
        if even:
            raise ConfigError(f"--kernel-sizes must be odd (padding k//2 keeps the width), got {','.join(map(str, even))}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.first_seed + self.seeds - 1 > TORCH_SEED[1]:
            raise ConfigError(f"--first-seed + --seeds - 1 must be at most 2^64 - 1 (a torch seed), got "
                              f"{self.first_seed + self.seeds - 1}")
        if not 0 < self.tau < 1:
            raise ConfigError(f"--tau must be in (0, 1), got {self.tau}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.n < 1 or self.test_n < 1:
            raise ConfigError(f"--n and --test-n must be >= 1, got {self.n} and {self.test_n}")
        if self.width < 3:
            raise ConfigError(f"--width must be >= 3, got {self.width}")
        if self.test_seed == self.data_seed:
            raise ConfigError("--test-seed must differ from --data-seed (the test set must be fresh)")
        if self.threads < 0:
            raise ConfigError(f"--threads must be >= 0 (0 = every core), got {self.threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if is_image_study(self):
            self._check_image_study()
        else:
            self._check_synthetic_study()
