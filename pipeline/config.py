"""Typed, frozen configs: one dataclass per stage (recipes in ``recipes.py``).

These dataclasses are the one source of defaults: the Click options (``cli.py``) and the
``MLproject`` parameters are generated from, or tested against, their fields. A field
whose default is ``None`` takes its value from the chosen recipe; an explicit option
always overrides the recipe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError
from pipeline.parsing import as_params, build_config, field_kind, parse_int_list, parse_value  # noqa: F401
from pipeline.recipes import (  # noqa: F401 - re-exported: the stages import them from here
    DATASET_RECIPES,
    DATASETS,
    FALLBACKS,
    RECIPES,
    Recipe,
    get_recipe,
    recipe_name,
    register_recipe,
)


def opt(default: Any, help: str) -> Any:
    """A config field with its one-line help (shown by ``--help``)."""
    return field(default=default, metadata={"help": help})


def resolve(cfg: Any) -> Any:
    """Fill every ``None`` field from the recipe, then from ``FALLBACKS``; explicit values win."""
    name = recipe_name(cfg.recipe, getattr(cfg, "dataset", None))
    recipe = get_recipe(name)
    updates: dict[str, Any] = {"recipe": name} if cfg.recipe != name else {}
    for f in dataclasses.fields(cfg):
        if getattr(cfg, f.name) is not None:
            continue
        if f.name in recipe.values:
            updates[f.name] = recipe.values[f.name]
        elif f.name in FALLBACKS:
            updates[f.name] = FALLBACKS[f.name]
    return dataclasses.replace(cfg, **updates) if updates else cfg


# --------------------------------------------------------------------------- field groups
@dataclass(frozen=True)
class TrackingFields:
    tracking_uri: str | None = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    experiment_name: str | None = opt(None, "MLflow experiment (default: the active or 'Default' experiment)")


@dataclass(frozen=True)
class DataFields:
    recipe: str | None = opt(None, "preset of data, model and training settings (see `pipeline recipes`); "
                                   "default: the data set's own (mnist -> mnist-small, digits -> digits-lenet, ...)")
    dataset: str | None = opt(None, "synthetic | digits | mnist | fashion-mnist | cifar10 | npz | idx")
    n: int = opt(75, "synthetic: number of sequences in the training set")
    width: int = opt(20, "synthetic: sequence length W")
    data_seed: int = opt(0, "synthetic: numpy seed of the training set (the lab uses 0)")
    val_seed: int = opt(1, "synthetic: numpy seed of the held-out validation set")
    data_dir: str | None = opt(None, "images: torchvision root (downloads go there), a folder of IDX files, "
                                     "or a labs' .npz file")
    download: bool = opt(False, "images: let torchvision fetch MNIST / FashionMNIST / CIFAR-10 into --data-dir")
    split_seed: int | None = opt(None, "images: seed of the held-out validation (and test) split")
    val_fraction: float | None = opt(None, "images: share of the training images held out for validation")
    test_fraction: float | None = opt(None, "digits, .npz, IDX folders without a test file: share held out as "
                                            "the test split")
    normalize: str | None = opt(None, "images: none (pixels in [0,1], as the labs) | standard (per-channel "
                                      "mean/std of the training split)")

    def _check_data(self) -> None:
        get_recipe(recipe_name(self.recipe, self.dataset))
        if self.n < 1:
            raise ConfigError(f"--n must be >= 1, got {self.n}")
        if self.width < 3:
            raise ConfigError(f"--width must be >= 3, got {self.width}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}"
            )
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1), got {v}")
        if self.normalize is not None and self.normalize not in ("none", "standard"):
            raise ConfigError(f"--normalize must be none or standard, got {self.normalize!r}")

    def recipe_value(self, name: str) -> Any:
        """A field's value as resolve() will see it: the explicit value, else the recipe's."""
        value = getattr(self, name)
        if value is None:
            value = get_recipe(recipe_name(self.recipe, self.dataset)).values.get(name, FALLBACKS.get(name))
        return value


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
    model: str | None = opt(None, "model name: detector1d | smallconv | lenet | conv3 | dropoutnet")
    filters: tuple[int, ...] | None = opt(None, "filter count per conv layer, e.g. 3 or 6,16")
    kernel_size: tuple[int, ...] | None = opt(None, "kernel size per conv layer, e.g. 5 or 5,5 (one value: every "
                                                    "layer); odd for detector1d")
    padding: str | None = opt(None, "2D convs: same (k//2, keeps H x W) or valid (no padding)")
    dropout: float | None = opt(None, "2D nets: dropout probability (Dropout2d after the last conv, Dropout in "
                                      "the head); 0 = none")
    batch_norm: bool = opt(False, "2D nets: BatchNorm2d after every conv")
    in_channels: int | None = opt(None, "input channels the 2D model is built for (cifar-lenet: 3); must match "
                                        "the data")
    loss: str | None = opt(None, "loss: bce (binary logits) | ce (cross-entropy) | nll (log-softmax + NLL)")
    optimizer: str | None = opt(None, "optimizer: sgd | rmsprop | adam")
    lr: float | None = opt(None, "learning rate")
    momentum: float | None = opt(None, "SGD / RMSprop momentum")
    weight_decay: float | None = opt(None, "L2 weight decay")
    epochs: int | None = opt(None, "passes over the training set")
    batch_size: int | None = opt(None, "minibatch size (>= 1; 0 = full batch, for the synthetic data only)")
    test_batch_size: int = opt(1000, "minibatch size when scoring the validation split (no gradients)")
    max_batches: int = opt(0, "stop each epoch after this many minibatches (0 = all): a fast path for tests")
    seed: int | None = opt(None, "torch.manual_seed for the model's initial weights and the batch order "
                                 "(separate from the data seed)")
    print_every: int | None = opt(None, "print 'Epoch %d had training loss %.4f' at epoch 1 and every N epochs")
    log_interval: int | None = opt(None, "print the minibatch loss every N minibatches, like the labs' script "
                                         "(0 = never)")
    image_every: int | None = opt(None, "log the filters as an image every N epochs (step = epoch)")
    device: str | None = opt(None, "auto | cpu | cuda")
    threads: int | None = opt(None, "torch CPU threads (1 is fastest for the tiny 1D models; 0 = torch's default)")

    def __post_init__(self) -> None:
        self._check_data()
        for name in ("filters", "kernel_size"):
            v = getattr(self, name)
            if v is not None and (len(v) == 0 or min(v) < 1):
                raise ConfigError(f"--{name.replace('_', '-')} needs positive integers, got {v}")
        if (self.kernel_size is not None and any(k % 2 == 0 for k in self.kernel_size)
                and self.recipe_value("model") == "detector1d"):
            raise ConfigError(f"--kernel-size must be odd (padding k//2 keeps the width), got {self.kernel_size}")
        if self.padding is not None and self.padding not in ("same", "valid"):
            raise ConfigError(f"--padding must be same or valid, got {self.padding!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.in_channels is not None and self.in_channels < 1:
            raise ConfigError(f"--in-channels must be >= 1, got {self.in_channels}")
        if self.loss is not None and self.loss not in ("bce", "ce", "nll"):
            raise ConfigError(f"unknown loss {self.loss!r}; choose bce, ce or nll")
        if self.optimizer is not None and self.optimizer not in ("sgd", "rmsprop", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd, rmsprop or adam")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None:
            check_batch_size(self.batch_size, self.recipe_value("dataset"))
        if self.test_batch_size < 1:
            raise ConfigError(f"--test-batch-size must be >= 1, got {self.test_batch_size}")
        for name in ("print_every", "image_every", "log_interval", "max_batches"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.device is not None and self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.threads is not None and self.threads < 0:
            raise ConfigError(f"--threads must be >= 0 (0 = torch's default), got {self.threads}")


def check_batch_size(batch_size: int, dataset: str | None) -> None:
    """Full batch (0) is the synthetic lab's setting; image data always comes in minibatches."""
    if batch_size < 0:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_size == 0 and (dataset or "synthetic") != "synthetic":
        raise ConfigError(f"--batch-size must be >= 1 for {dataset} (0 = full batch is for the synthetic data only)")


@dataclass(frozen=True)
class EvaluateConfig(DataFields, TrackingFields):
    """evaluate: score a logged model on fresh data and log what it learned."""

    model_uri: str | None = opt(None, "model to evaluate, e.g. runs:/<run id>/model")
    run_id: str | None = opt(None, "shortcut for --model-uri runs:/<run id>/model")
    data_uri: str | None = opt(None, "prepared data whose test split to use (default: the evaluated run's)")
    data_seed: int = opt(2, "synthetic: numpy seed of the fresh test set")
    n: int = opt(1000, "synthetic: number of sequences in the test set")
    test_batch_size: int = opt(1000, "minibatch size for scoring the test split")
    examples: int = opt(16, "images: how many easiest and how many hardest test examples to show")
    device: str | None = opt(None, "auto | cpu | cuda")

    def __post_init__(self) -> None:
        self._check_data()
        if self.test_batch_size < 1:
            raise ConfigError(f"--test-batch-size must be >= 1, got {self.test_batch_size}")
        if self.examples < 1:
            raise ConfigError(f"--examples must be >= 1, got {self.examples}")
        if self.device is not None and self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
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
    device: str | None = opt(None, "accuracy objective: auto | cpu | cuda (default: the recipe's)")
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


@dataclass(frozen=True)
class InspectConfig(EvaluateConfig):
    """inspect: what a trained model learned (activation maximisation, saliency, Sobel scores)."""

    steps: int = opt(200, "gradient-ascent steps of activation maximisation")
    radius: float | None = opt(None, "L2 norm bound of the optimised inputs (default: mean norm of test inputs)")
    ascent_lr: float = opt(0.1, "Adam step size of the ascent on the input")
    saliency_examples: int = opt(8, "images: how many easiest and hardest test examples get saliency maps")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.radius is not None and not self.radius > 0:
            raise ConfigError(f"--radius must be > 0, got {self.radius}")
        if not self.ascent_lr > 0:
            raise ConfigError(f"--ascent-lr must be > 0, got {self.ascent_lr}")
        if self.saliency_examples < 1:
            raise ConfigError(f"--saliency-examples must be >= 1, got {self.saliency_examples}")
