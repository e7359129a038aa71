"""Typed, frozen configs of the single-model stages: prepare-data, train, evaluate, inspect, main.

These dataclasses are the one source of defaults: the Click options (``cli.py``) and the
``MLproject`` parameters are generated from, or tested against, their fields. A field
whose default is ``None`` takes its value from the chosen recipe (``recipes.resolve``); an
explicit option always overrides the recipe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config.fields import (
    IF_CHANGED,
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
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class PrepareDataConfig(DataFields, TrackingFields):
    """prepare-data: build the data set and log it (tensors, dataset input, a picture)."""

    def __post_init__(self) -> None:
        self._check_data()
        self._check_data_kind()


@dataclass(frozen=True)
class TrainConfig(SystemMetricsFields, DataFields, TrackingFields):
    """train: fit one model and log its curves, filters, figures and the model itself."""

    data_uri: str | None = opt(None, "prepared data from prepare-data (runs:/<id>/data); default: build on the fly",
                               SETTING)  # a tag: where the data came from
    model: str | None = opt(None, "model name: detector1d | smallconv | lenet | conv3 | dropoutnet")
    filters: tuple[int, ...] | None = opt(None, "filter count per conv layer, e.g. 3 or 6,16")
    kernel_size: tuple[int, ...] | None = opt(None, "kernel size per conv layer, e.g. 5 or 5,5 (one value: every "
                                                    "layer); odd for detector1d")
    padding: str | None = opt(None, "2D convs: same (k//2, keeps H x W) or valid (no padding)", IMAGES)
    dropout: float | None = opt(None, "2D nets: dropout probability (Dropout2d after the last conv, Dropout in "
                                      "the head); 0 = none", IMAGES)
    batch_norm: bool = opt(False, "2D nets: BatchNorm2d after every conv", IMAGES)
    in_channels: int | None = opt(None, "input channels the 2D model is built for (cifar-lenet: 3); must match "
                                        "the data", SETTING)  # the data's, so not a param of its own
    loss: str | None = opt(None, "loss: bce (binary logits) | ce (cross-entropy) | nll (log-softmax + NLL)")
    optimizer: str | None = opt(None, "optimizer: sgd | rmsprop | adam")
    lr: float | None = opt(None, "learning rate")
    momentum: float | None = opt(None, "SGD / RMSprop momentum")
    weight_decay: float | None = opt(None, "L2 weight decay")
    epochs: int | None = opt(None, "passes over the training set")
    batch_size: int | None = opt(None, "minibatch size (>= 1; 0 = full batch, for the synthetic data only)")
    test_batch_size: int = opt(1000, "minibatch size when scoring the validation split (no gradients)", SETTING)
    max_batches: int = opt(0, "stop each epoch after this many minibatches (0 = all): a fast path for tests",
                           IF_CHANGED)
    seed: int | None = opt(None, "torch.manual_seed for the model's initial weights and the batch order "
                                 "(separate from the data seed)", within=TORCH_SEED)
    print_every: int | None = opt(None, "print 'Epoch %d had training loss %.4f' at epoch 1 and every N epochs",
                                  SETTING)
    log_interval: int | None = opt(None, "print the minibatch loss every N minibatches, like the labs' script "
                                         "(0 = never)", SETTING)
    image_every: int | None = opt(None, "log the filters as an image every N epochs (step = epoch)", SETTING)
    device: str | None = opt(None, "auto | cpu | cuda", SETTING)
    threads: int | None = opt(None, "torch CPU threads (1 is fastest for the tiny 1D models; 0 = torch's default)",
                              SETTING, within=THREADS)
    register_model: str | None = opt(None, "also register the logged model under this name in the MLflow Model "
                                           "Registry (a new version each run)", SETTING)
    checkpoint_every: str = opt("10m", "save a checkpoint (artifact checkpoints/last.pt) every N epochs, or every "
                                       "duration (30s, 10m, 2h) at an epoch's end; also on SIGTERM/SIGINT/SIGHUP",
                                SETTING)
    resume: str | None = opt(None, "continue the KILLED or FAILED train run with this id (or a rescue folder) from "
                                   "its checkpoint, with its own settings", SETTING)
    alias: str | None = opt(None, "with --register-model: point this alias of the registered model at the new "
                                  "version (e.g. champion), so that models:/NAME@ALIAS serves it", SETTING)

    def __post_init__(self) -> None:
        self._check_data()
        self._check_data_kind()
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
        if self.data_uri is None:  # with --data-uri the data set (so the task) is known only once loaded
            check_loss(self.recipe_value("loss"), "binary" if self.recipe_value("dataset") == "synthetic"
                       else "multiclass")
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
        parse_every(self.checkpoint_every)
        check_alias(self.alias, self.register_model)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h)\s*$")


def parse_every(text: str) -> tuple[int, float]:
    """``--checkpoint-every``: (epochs, seconds); '5' -> every 5 epochs, '10m' / '30s' / '2h' -> by time."""
    text = str(text).strip()
    if text.isdigit() and int(text) > 0:
        return int(text), 0.0
    match = _DURATION.match(text)
    if match and float(match.group(1)) > 0:
        return 0, float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    raise ConfigError(f"--checkpoint-every must be a number of epochs (5) or a duration (30s, 10m, 2h), got {text!r}")


def check_alias(alias: str | None, registered_name: str | None) -> None:
    """An alias that MLflow's registry takes (letters, digits, _ and -; not ``latest`` or ``v<N>``), for a registered model."""
    if alias is None:
        return
    if not registered_name:
        raise ConfigError("--alias names a version of a registered model: give --register-model NAME too")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", alias) or re.fullmatch(r"(?i)latest|v\d+", alias):
        raise ConfigError(f"--alias {alias!r}: use letters, digits, _ and - (not 'latest' or v<number>, which "
                          "name versions)")


def check_loss(loss: str | None, task: str) -> None:
    """A loss that fits the model's output: one logit (binary) takes bce; class scores take ce or nll."""
    if loss is None:
        return
    if task == "binary" and loss != "bce":
        raise ConfigError(f"--loss {loss} does not fit the 1D detector's single output (it would train to a loss "
                          "of exactly 0 and learn nothing); use --loss bce")
    if task != "binary" and loss == "bce":
        raise ConfigError("--loss bce is for the 1D detector's single output; class scores take --loss ce "
                          "(or nll)")


def check_batch_size(batch_size: int, dataset: str | None) -> None:
    """Full batch (0) is the synthetic lab's setting; image data always comes in minibatches."""
    if batch_size < 0:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_size == 0 and (dataset or "synthetic") != "synthetic":
        raise ConfigError(f"--batch-size must be >= 1 for {dataset} (0 = full batch is for the synthetic data only)")


@dataclass(frozen=True)
class EvaluateConfig(DataFields, TrackingFields):
    """evaluate: score a logged model on fresh data and log what it learned."""

    model_uri: str | None = opt(None, "model to evaluate, e.g. runs:/<run id>/detector1d-F4-k5 or models:/NAME/1",
                                SETTING)  # a tag
    run_id: str | None = opt(None, "evaluate the model that this train run logged", SETTING)
    data_uri: str | None = opt(None, "prepared data whose test split to use (default: the evaluated run's)", SETTING)
    data_seed: int = opt(2, "synthetic: numpy seed of the fresh test set", SYNTHETIC, within=NUMPY_SEED)
    n: int = opt(1000, "synthetic: number of sequences in the test set", SYNTHETIC)
    test_batch_size: int = opt(1000, "minibatch size for scoring the test split", SETTING)
    examples: int = opt(16, "images: how many easiest and how many hardest test examples to show", SETTING,
                        within=(1, 256))
    device: str | None = opt(None, "auto | cpu | cuda", SETTING)

    def __post_init__(self) -> None:
        self._check_data()
        if self.test_batch_size < 1:
            raise ConfigError(f"--test-batch-size must be >= 1, got {self.test_batch_size}")
        if self.examples < 1:
            raise ConfigError(f"--examples must be >= 1, got {self.examples}")
        if self.device is not None and self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.model_uri is None and self.run_id is None:
            raise ConfigError("give --model-uri runs:/<run id>/<model name> or --run-id <run id>")
        if self.model_uri is not None and self.run_id is not None:
            raise ConfigError("give only one of --model-uri and --run-id")


@dataclass(frozen=True)
class MainConfig(TrackingFields):
    """main: the whole offline study on the synthetic data, as nested runs under one parent."""

    epochs: int = opt(500, "epochs for each training run")
    seed: int = opt(0, "model seed shared by the 3- and 4-filter runs", within=TORCH_SEED)
    small_filters: int = opt(3, "filters of the first (local-minimum prone) detector")
    large_filters: int = opt(4, "filters of the second detector")
    sweep_trials: int = opt(12, "trials of the closing sweep over filters x kernel size (0 = no sweep)")
    sweep_seeds: int = opt(50, "seeds per sweep trial (P(success) is estimated over them)")
    capacity_seeds: int = opt(100, "seeds per configuration of the quick capacity grid (F = 1-8 x k = 3,5,7) that "
                                   "puts P(success) against F on the front page (0 = no grid)")
    storage: str = opt("sqlite:///optuna.db", "Optuna storage of the closing sweep (sqlite:///FILE, "
                                              "postgresql://..., FILE.journal)", SETTING)
    rerun: bool = opt(False, "run every stage again, even one that a finished run of the same configuration, code "
                             "and data in this experiment has done (by default that run is reused)", SETTING)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.sweep_trials < 0 or self.sweep_seeds < 1 or self.capacity_seeds < 0:
            raise ConfigError("--sweep-trials and --capacity-seeds must be >= 0, --sweep-seeds >= 1")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if min(self.small_filters, self.large_filters) < 1:
            raise ConfigError("filter counts must be >= 1")


@dataclass(frozen=True)
class ReproduceConfig(TrackingFields):
    """reproduce: a finished run again from its config.json, compared with the original value by value (the run id
    is the command's argument; the reproduction goes to the original's experiment)."""


@dataclass(frozen=True)
class InspectConfig(EvaluateConfig):
    """inspect: what a trained model learned (activation maximisation, saliency, Sobel scores)."""

    steps: int = opt(200, "gradient-ascent steps of activation maximisation")
    radius: float | None = opt(None, "L2 norm bound of the optimised inputs (default: mean norm of test inputs)")
    ascent_lr: float = opt(0.1, "Adam step size of the ascent on the input")
    saliency_examples: int = opt(8, "images: how many easiest and hardest test examples get saliency maps",
                                 within=(1, 256))

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


@dataclass(frozen=True)
class ServeConfig:
    """serve: answer HTTP requests with a logged model: class probabilities and the predicted class."""

    run_id: str | None = opt(None, "serve the model that this train run logged")
    model_uri: str | None = opt(None, "or any model URI: runs:/<id>/<name>, models:/NAME/VERSION, models:/NAME@ALIAS")
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = opt(5001, "port to listen on (the MLflow UI takes 5000)")
    tracking_uri: str | None = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")

    def __post_init__(self) -> None:
        check_fields(self)
        if (self.run_id is None) == (self.model_uri is None):
            raise ConfigError("give --run-id <train run id> or --model-uri <model URI> (one of them)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
