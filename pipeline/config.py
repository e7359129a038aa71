"""Typed, frozen configs: one dataclass per stage, and the recipe registry.

These dataclasses are the one source of defaults: the Click options (``cli.py``) and the
``MLproject`` parameters are generated from, or tested against, their fields. A field
whose default is ``None`` takes its value from the chosen recipe; an explicit option
always overrides the recipe.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping


class ConfigError(ValueError):
    """Bad user input: reported as one line, never as a traceback."""


def opt(default: Any, help: str) -> Any:
    """A config field with its one-line help (shown by ``--help``)."""
    return field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """A named preset of data, model and training settings from one of the course labs."""

    name: str
    description: str
    values: Mapping[str, Any]


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, description: str, **values: Any) -> Recipe:
    recipe = Recipe(name, description, types.MappingProxyType(dict(values)))
    RECIPES[name] = recipe
    return recipe


register_recipe(
    "synthetic",
    "1D 'detect 0,+1,0' lab: Conv1d(1,F,k) -> ReLU -> global max pool -> Linear(F,1), "
    "full-batch SGD, BCEWithLogits, 500 epochs",
    dataset="synthetic",
    model="detector1d",
    filters=(3,),
    kernel_size=(5,),
    loss="bce",
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-3,
    epochs=500,
    batch_size=0,
    print_every=50,
    image_every=50,
)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}"
        ) from None


# --------------------------------------------------------------------------- parsing
def parse_int_list(text: str | int | tuple | list | None) -> tuple[int, ...] | None:
    """'3' -> (3,), '6,16' -> (6, 16), '1-8' -> (1, ..., 8), '' -> None (recipe's value)."""
    if text is None:
        return None
    if isinstance(text, int):
        return (text,)
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    text = str(text).strip()
    if text == "" or text.lower() == "none":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"empty item in list {text!r}")
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"empty range {part!r} (end {hi} < start {lo})")
            out.extend(range(lo, hi + 1))
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"not an integer list: {text!r} (use e.g. 3 or 6,16 or 1-8)") from None
    return tuple(out)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) of a field annotation such as ``float | None``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"tuple": tuple})  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def field_kind(f: dataclasses.Field) -> tuple[Any, bool]:
    return _base_type(f.type)


def parse_value(f: dataclasses.Field, value: Any) -> Any:
    """Convert a CLI / MLproject string to the field's type ('' or 'none' -> None for optionals)."""
    base, optional = field_kind(f)
    if value is None:
        return None
    if isinstance(value, str) and optional and value.strip().lower() in ("", "none"):
        return None
    if typing.get_origin(base) is tuple or base is tuple:
        try:
            return parse_int_list(value)
        except ConfigError as err:
            raise ConfigError(f"--{f.name.replace('_', '-')}: {err}") from None
    if base is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{f.name.replace('_', '-')}: not a boolean: {value!r}")
    try:
        if base is int:
            fv = float(value)
            if fv != int(fv):
                raise ValueError
            return int(fv)
        if base is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--{f.name.replace('_', '-')}: expected {base.__name__}, got {value!r}"
        ) from None
    return str(value)


def build_config(cls: type, values: Mapping[str, Any]) -> Any:
    """Build ``cls`` from string or typed values, rejecting unknown keys loudly."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: parse_value(names[k], v) for k, v in values.items()})


def resolve(cfg: Any) -> Any:
    """Fill every ``None`` field that the config's recipe sets; explicit values win."""
    recipe = get_recipe(cfg.recipe)
    updates = {
        f.name: recipe.values[f.name]
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) is None and f.name in recipe.values
    }
    return dataclasses.replace(cfg, **updates) if updates else cfg


def as_params(cfg: Any) -> dict[str, str]:
    """Flat string params for MLflow (tuples as '6,16', None as '')."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple):
            v = ",".join(str(x) for x in v)
        out[f.name] = "" if v is None else str(v)
    return out


# --------------------------------------------------------------------------- field groups
@dataclass(frozen=True)
class TrackingFields:
    tracking_uri: str | None = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    experiment_name: str | None = opt(None, "MLflow experiment (default: the active or 'Default' experiment)")


@dataclass(frozen=True)
class DataFields:
    recipe: str = opt("synthetic", "preset of data, model and training settings (see `pipeline recipes`)")
    dataset: str | None = opt(None, "data set name: synthetic (more come with the image recipes)")
    n: int = opt(75, "synthetic: number of sequences in the training set")
    width: int = opt(20, "synthetic: sequence length W")
    data_seed: int = opt(0, "synthetic: numpy seed of the training set (the lab uses 0)")
    val_seed: int = opt(1, "synthetic: numpy seed of the held-out validation set")

    def _check_data(self) -> None:
        get_recipe(self.recipe)
        if self.n < 1:
            raise ConfigError(f"--n must be >= 1, got {self.n}")
        if self.width < 3:
            raise ConfigError(f"--width must be >= 3, got {self.width}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}"
            )


DATASETS = {"synthetic"}


# --------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class PrepareDataConfig(DataFields, TrackingFields):
    """prepare-data: build the data set and log it (tensors, dataset input, a picture)."""

    def __post_init__(self) -> None:
        self._check_data()


@dataclass(frozen=True)
class TrainConfig(DataFields, TrackingFields):
    """train: fit one model and log its curves, filters, figures and the model itself."""

    data_uri: str | None = opt(None, "prepared data from prepare-data (runs:/<id>/data); default: build on the fly")
    model: str | None = opt(None, "model name: detector1d")
    filters: tuple[int, ...] | None = opt(None, "filter count per conv layer, e.g. 3 or 6,16")
    kernel_size: tuple[int, ...] | None = opt(None, "odd kernel size per conv layer, e.g. 5 or 5,5")
    loss: str | None = opt(None, "loss: bce (binary logits)")
    optimizer: str | None = opt(None, "optimizer: sgd")
    lr: float | None = opt(None, "learning rate")
    momentum: float | None = opt(None, "SGD momentum")
    weight_decay: float | None = opt(None, "L2 weight decay")
    epochs: int | None = opt(None, "passes over the training set")
    batch_size: int | None = opt(None, "minibatch size; 0 = full batch")
    seed: int = opt(0, "torch.manual_seed for the model's initial weights (separate from the data seed)")
    print_every: int | None = opt(None, "print 'Epoch %d had training loss %.4f' at epoch 1 and every N epochs")
    image_every: int | None = opt(None, "log the filters as an image every N epochs (step = epoch)")
    device: str = opt("cpu", "auto | cpu | cuda")
    threads: int = opt(1, "torch CPU threads (1 is fastest for the tiny models)")

    def __post_init__(self) -> None:
        self._check_data()
        for name in ("filters", "kernel_size"):
            v = getattr(self, name)
            if v is not None and (len(v) == 0 or min(v) < 1):
                raise ConfigError(f"--{name.replace('_', '-')} needs positive integers, got {v}")
        if self.kernel_size is not None and any(k % 2 == 0 for k in self.kernel_size):
            raise ConfigError(f"--kernel-size must be odd (padding k//2 keeps the width), got {self.kernel_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 0:
            raise ConfigError(f"--batch-size must be >= 0 (0 = full batch), got {self.batch_size}")
        for name in ("print_every", "image_every"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class EvaluateConfig(DataFields, TrackingFields):
    """evaluate: score a logged model on fresh data and log what it learned."""

    model_uri: str | None = opt(None, "model to evaluate, e.g. runs:/<run id>/model")
    run_id: str | None = opt(None, "shortcut for --model-uri runs:/<run id>/model")
    data_seed: int = opt(2, "synthetic: numpy seed of the fresh test set")
    n: int = opt(1000, "synthetic: number of sequences in the test set")
    device: str = opt("cpu", "auto | cpu | cuda")

    def __post_init__(self) -> None:
        self._check_data()
        if self.model_uri is None and self.run_id is None:
            raise ConfigError("give --model-uri runs:/<run id>/model or --run-id <run id>")
        if self.model_uri is not None and self.run_id is not None:
            raise ConfigError("give only one of --model-uri and --run-id")

    @property
    def resolved_model_uri(self) -> str:
        return self.model_uri or f"runs:/{self.run_id}/model"


@dataclass(frozen=True)
class MainConfig(TrackingFields):
    """main: the whole offline study on the synthetic data, as nested runs under one parent."""

    epochs: int = opt(500, "epochs for each training run")
    seed: int = opt(0, "model seed shared by the 3- and 4-filter runs")
    small_filters: int = opt(3, "filters of the first (local-minimum prone) detector")
    large_filters: int = opt(4, "filters of the second detector")
    sweep_trials: int = opt(12, "trials of the closing sweep over filters x kernel size (0 = no sweep)")
    sweep_seeds: int = opt(50, "seeds per sweep trial (P(success) is estimated over them)")
    storage: str | None = opt(None, "Optuna storage of the closing sweep (default sqlite:///optuna.db)")

    def __post_init__(self) -> None:
        if self.sweep_trials < 0 or self.sweep_seeds < 1:
            raise ConfigError("--sweep-trials must be >= 0 and --sweep-seeds >= 1")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if min(self.small_filters, self.large_filters) < 1:
            raise ConfigError("filter counts must be >= 1")


SAMPLERS = ("tpe", "grid", "random")
OBJECTIVES = ("success", "accuracy")


@dataclass(frozen=True)
class SweepConfig(DataFields, TrackingFields):
    """sweep: an Optuna study over filter counts and kernel sizes, one MLflow child run per trial."""

    objective: str = opt("success", "success = P(success) over seeds (synthetic); accuracy = validation accuracy (images)")
    study_name: str = opt("detector-capacity", "Optuna study name; an existing study is resumed (load_if_exists)")
    storage: str | None = opt(None, "Optuna storage: sqlite:///FILE (default sqlite:///optuna.db), postgresql://..., FILE.journal, memory")
    filters: tuple[int, ...] = opt((1, 2, 3, 4, 5, 6, 7, 8), "filter-count choices (per conv layer), a list or range: 1-8")
    kernel_sizes: tuple[int, ...] = opt((3, 5, 7), "odd kernel-size choices (per conv layer), e.g. 3,5,7")
    lr_min: float | None = opt(None, "also search the learning rate, log-uniform from LR_MIN ...")
    lr_max: float | None = opt(None, "... to LR_MAX (both or neither)")
    seeds: int = opt(50, "success objective: initialisation seeds 0..S-1 per trial (as pipeline capacity)")
    tau: float = opt(0.05, "success objective: a seed succeeds when its final loss < tau and train accuracy is 100%")
    epochs: int | None = opt(None, "training epochs per trial (default: the recipe's)")
    batch_size: int | None = opt(None, "accuracy objective: minibatch size (default: the recipe's)")
    n_trials: int = opt(20, "trials for this worker (several workers add up)")
    timeout: float | None = opt(None, "stop this worker after this many seconds")
    sampler: str = opt("tpe", "tpe | grid (exhaustive over the choices) | random")
    sampler_seed: int = opt(0, "seed of the sampler (and of the models in the accuracy objective)")
    pruner: str = opt("median", "accuracy objective: median | none")
    multi_objective: bool = opt(False, "also minimise the parameter count; report the Pareto front")
    heartbeat_interval: int = opt(10, "seconds between a running trial's heartbeats (0 = off)")
    grace_period: int | None = opt(None, "seconds without heartbeat before a trial is failed and retried (default 2x interval)")
    max_retry: int = opt(3, "times a trial of a dead worker is re-queued")
    progress: bool = opt(True, "show a progress bar over trials")
    threads: int = opt(1, "torch CPU threads")

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
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if not 0 < self.tau < 1:
            raise ConfigError(f"--tau must be in (0, 1), got {self.tau}")
        if self.n_trials < 1:
            raise ConfigError(f"--n-trials must be >= 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.heartbeat_interval < 0 or (self.grace_period is not None and self.grace_period < 1):
            raise ConfigError("--heartbeat-interval must be >= 0 and --grace-period >= 1")
        if self.max_retry < 0:
            raise ConfigError(f"--max-retry must be >= 0, got {self.max_retry}")


@dataclass(frozen=True)
class StudySummaryConfig:
    """study-summary: print a study's best trials and its trial counts by state."""

    study_name: str = opt("detector-capacity", "Optuna study name")
    storage: str | None = opt(None, "Optuna storage URL (default sqlite:///optuna.db)")
    top: int = opt(5, "how many best trials to print")

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ConfigError(f"--top must be >= 1, got {self.top}")


@dataclass(frozen=True)
class CapacityConfig(TrackingFields):
    """capacity: P(success) of the synthetic detector over a grid of filter counts x kernel sizes."""

    filters: tuple[int, ...] | None = opt((1, 2, 3, 4, 5, 6, 7, 8), "filter counts F of the grid, e.g. 1-8 or 3,4")
    kernel_sizes: tuple[int, ...] | None = opt((3, 5, 7), "odd kernel sizes k of the grid, e.g. 3,5,7")
    seeds: int = opt(200, "initialisation seeds per configuration (seeds first_seed ... first_seed+seeds-1)")
    first_seed: int = opt(0, "first torch.manual_seed; a seed s is the same run as `pipeline train --seed s`")
    tau: float = opt(0.05, "success: final training loss < tau and 100% training accuracy (0.02 and 0.1 are reported too)")
    lr: float = opt(0.05, "SGD learning rate (the synthetic recipe's)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(1e-3, "L2 weight decay")
    epochs: int = opt(500, "full-batch epochs per training")
    n: int = opt(75, "number of sequences in the training set")
    width: int = opt(20, "sequence length W")
    data_seed: int = opt(0, "numpy seed of the training set (the lab uses 0)")
    test_seed: int = opt(2, "numpy seed of the fresh test set for generalisation")
    test_n: int = opt(1000, "number of sequences in the fresh test set")
    table: str | None = opt(None, "also write the per-seed table to this local CSV file")
    threads: int = opt(1, "torch CPU threads (1 is usually fastest on a shared 2-core machine)")
    device: str = opt("cpu", "auto | cpu | cuda")

    def __post_init__(self) -> None:
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
        if self.first_seed < 0:
            raise ConfigError(f"--first-seed must be >= 0, got {self.first_seed}")
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
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
