"""Building blocks of the stage configs: ``opt`` (a field with its help and range), the range
check that every config runs (``check_fields``), and the field groups that several stages
share (tracking, data).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.checks import writable_file
from pipeline.errors import ConfigError
from pipeline.config.recipes import DATASETS, FALLBACKS, get_recipe, recipe_name

TORCH_SEED = (0, 2**64 - 1)  # torch.manual_seed, torch.Generator
NUMPY_SEED = (0, 2**32 - 1)  # np.random.RandomState (the synthetic data), Optuna's samplers
INT64 = (-(2**63), 2**63 - 1)  # any other integer option
THREADS = (0, 1024)  # torch CPU threads: far more fail to start (and never help)
OUTPUT_FILES = ("table",)  # fields naming a local file that the stage writes at its end

# How a field shows up among a run's MLflow params (``parsing.defining_params``); every field is
# in the run's config.json whatever this says.
PARAM = True  # it defines the run: logged when it has a value
SETTING = False  # how or where the run executes (threads, device, printing, tracking): never a param
SYNTHETIC = "synthetic"  # defines the run on the synthetic data only
IMAGES = "images"  # defines the run on image data only
IF_CHANGED = "if-changed"  # a param only when it differs from its default (e.g. a test's --max-batches)


def opt(default: Any, help: str, param: bool | str = PARAM, *, within: tuple[int, int] | None = None) -> Any:
    """A config field with its one-line help (shown by ``--help``), its role as an MLflow param and,
    for integers, its range (``check_fields``)."""
    return field(default=default, metadata={"help": help, "param": param, "within": within or INT64})


def _bound(v: int) -> str:
    for base in (2**64, 2**63, 2**32):
        if abs(v) in (base, base - 1):
            return f"{'-' if v < 0 else ''}2^{base.bit_length() - 1}{' - 1' if abs(v) == base - 1 else ''}"
    return str(v)


IMAGE_DATA = ("data_dir", "split_seed", "val_fraction", "test_fraction", "normalize")  # DataFields' image options


def refuse_options(names: list[str], why: str) -> None:
    """A ConfigError naming the options ``names`` (given, but not for this data or study), if any."""
    if names:
        raise ConfigError(f"{', '.join('--' + name.replace('_', '-') for name in names)}: {why}")


def check_fields(cfg: Any) -> None:
    """Every integer of ``cfg`` inside its field's range, every float finite, every local file that the
    stage will write (``OUTPUT_FILES``) writable: before any work."""
    for f in dataclasses.fields(cfg):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(cfg, f.name)
        if f.name in OUTPUT_FILES and value:
            writable_file(value, flag)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{flag} must be a finite number, got {v}")
            if isinstance(v, int) and not isinstance(v, bool):
                lo, hi = f.metadata.get("within") or INT64
                if not lo <= v <= hi:
                    raise ConfigError(f"{flag} must be in [{_bound(lo)}, {_bound(hi)}], got {v}")


@dataclass(frozen=True)
class TrackingFields:
    tracking_uri: str | None = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
                                   SETTING)
    experiment_name: str | None = opt(None, "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else "
                                            "convnet-study)", SETTING)


@dataclass(frozen=True)
class SystemMetricsFields:
    no_system_metrics: bool = opt(False, "do not sample the run's system metrics (its System metrics tab in MLflow) "
                                         "once per 10 s; a shorter run has none anyway", SETTING)


@dataclass(frozen=True)
class DataFields:
    recipe: str | None = opt(None, "preset of data, model and training settings (see `pipeline recipes`); "
                                   "default: the data set's own (mnist -> mnist-small, digits -> digits-lenet, ...)")
    dataset: str | None = opt(None, "synthetic | digits | mnist | fashion-mnist | cifar10 | npz | idx")
    n: int = opt(75, "synthetic: number of sequences in the training set", SYNTHETIC)
    width: int = opt(20, "synthetic: sequence length W", SYNTHETIC)
    data_seed: int = opt(0, "synthetic: numpy seed of the training set (the lab uses 0)", SYNTHETIC,
                         within=NUMPY_SEED)
    val_seed: int = opt(1, "synthetic: numpy seed of the held-out validation set", SYNTHETIC, within=NUMPY_SEED)
    data_dir: str | None = opt(None, "images: torchvision root (downloads go there), a folder of IDX files, "
                                     "or a labs' .npz file", SETTING)
    download: bool = opt(False, "images: let torchvision fetch MNIST / FashionMNIST / CIFAR-10 into --data-dir",
                         SETTING)
    split_seed: int | None = opt(None, "images: seed of the held-out validation (and test) split", IMAGES,
                                 within=TORCH_SEED)
    val_fraction: float | None = opt(None, "images: share of the training images held out for validation", IMAGES)
    test_fraction: float | None = opt(None, "digits, .npz, IDX folders without a test file: share held out as "
                                            "the test split", IMAGES)
    normalize: str | None = opt(None, "images: none (pixels in [0,1], as the labs) | standard (per-channel "
                                      "mean/std of the training split)", IMAGES)

    def _check_data(self) -> None:
        check_fields(self)
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

    def _check_data_kind(self) -> None:
        """Options of the other kind of data than the one in force (the recipe's or ``--dataset``), refused in one
        line: they would be ignored. Not with ``--data-uri``, whose kind is known once it is loaded."""
        if getattr(self, "data_uri", None) is not None:
            return
        if self.recipe_value("dataset") == "synthetic":
            refuse_options(self._image_data_given(), "options of image data, but the data is the synthetic 1D set "
                                                     "(give --dataset or an image --recipe)")
        else:
            refuse_options(self._synthetic_given(),
                           f"options of the synthetic 1D data, but the data is {self.recipe_value('dataset')}")

    def _synthetic_given(self) -> list[str]:
        """This config's synthetic-only options (role SYNTHETIC) set away from their defaults."""
        return [f.name for f in dataclasses.fields(self)
                if f.metadata.get("param") == SYNTHETIC and getattr(self, f.name) != f.default]

    def _image_data_given(self) -> list[str]:
        """The image-data options given: set, and not to what resolve() fills in from the recipe."""
        recipe = get_recipe(recipe_name(self.recipe, self.dataset)).values
        given = [name for name in IMAGE_DATA
                 if getattr(self, name) not in (None, recipe.get(name, FALLBACKS.get(name)))]
        return given + (["download"] if self.download else [])

    def recipe_value(self, name: str) -> Any:
        """A field's value as resolve() will see it: the explicit value, else the recipe's."""
        value = getattr(self, name)
        if value is None:
            value = get_recipe(recipe_name(self.recipe, self.dataset)).values.get(name, FALLBACKS.get(name))
        return value
