"""A logged model and the data to look at it with: what `evaluate` and `inspect` start from.

The data options that were not given are taken from the run that trained the model (its
recipe, data set, data folder and split), so no data options need repeating; explicit
options override them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from pipeline.config.parsing import parse_value
from pipeline.config.recipes import resolve
from pipeline.config.stages import EvaluateConfig
from pipeline.data.bundle import DataBundle, Split
from pipeline.data.io import bundle_from_uri
from pipeline.data.load import load_bundle
from pipeline.data.synthetic import make_synthetic
from pipeline.errors import ConfigError
from pipeline.models.registry import first_conv
from pipeline.tracking import runs
from pipeline.tracking.experiments import shape_label
from pipeline.tracking.provenance import run_settings
from pipeline.tracking.serving import load_module
from pipeline.train.batching import pick_device

# Data options that evaluate takes from the evaluated run unless given; the location ones
# only while the data set is the same.
INHERITED = ("recipe", "dataset", "data_dir", "split_seed", "val_fraction", "test_fraction", "normalize", "data_uri")
LOCATION = ("recipe", "data_dir", "data_uri")


def source_run(run_id: str | None, echo: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, tags) of the run that logged the model (``provenance.run_settings``); empty for a model
    that no run of a store logged (``models:/``, a path)."""
    return run_settings(run_id, echo) if run_id else ({}, {})


def resolve_model_uri(cfg: Any) -> str:
    """``--model-uri`` as given, or the model that the run ``--run-id`` logged (``runs:/<id>/<its name>``)."""
    if cfg.model_uri:
        return cfg.model_uri
    from pipeline.tracking.serving import model_uri_of_run

    return model_uri_of_run(cfg.run_id)


def inherit(cfg: EvaluateConfig, params: dict[str, str]) -> EvaluateConfig:
    """Fill the data options that were not given from the evaluated run's params (its resolved values)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    src_dataset = params.get("resolved.dataset", params.get("dataset")) or None
    same_data = cfg.dataset is None or cfg.dataset == src_dataset
    synthetic = (cfg.dataset or src_dataset or "synthetic") == "synthetic"
    updates: dict[str, Any] = {}
    for name in INHERITED:
        if getattr(cfg, name) is not None or (name in LOCATION and not same_data):
            continue
        if name == "data_uri" and synthetic:  # the run's training data: a synthetic test set is drawn fresh
            continue
        value = params.get(f"resolved.{name}", params.get(name))
        if value not in (None, ""):
            updates[name] = parse_value(fields[name], value)
    return dataclasses.replace(cfg, **updates) if updates else cfg


def source_run_id(uri: str) -> str | None:
    return uri.split("/")[1] if uri.startswith("runs:/") else None


def test_data(cfg: EvaluateConfig) -> DataBundle:
    """``--data-uri``: that prepared data (its test split; for 1D sequences the whole set). Else synthetic:
    a fresh set (``--data-seed``, ``--n``); images: the test split of the run's data."""
    dataset = cfg.dataset or "synthetic"
    if cfg.data_uri or dataset != "synthetic":
        bundle = bundle_from_uri(cfg.data_uri) if cfg.data_uri else load_bundle(cfg)
        if bundle.task == "binary":  # prepared synthetic data: evaluate on the set it holds
            return DataBundle(bundle.name, bundle.task, bundle.train, bundle.train, bundle.classes,
                              {**bundle.meta, "from": cfg.data_uri})
        if bundle.test is None:
            raise ConfigError(f"{cfg.data_uri or dataset}: has no test split to evaluate on")
        return bundle
    X, y = make_synthetic(cfg.n, cfg.width, cfg.data_seed)
    split = Split(X, y)
    return DataBundle("synthetic", "binary", split, split, ("no pattern", "0,+1,0"),
                      {"n": cfg.n, "width": cfg.width, "data_seed": cfg.data_seed})


def check_model_fits(model: torch.nn.Module, bundle: DataBundle, uri: str) -> None:
    """A 1D detector looks at sequences, an image model at images: refuse the other kind of data."""
    try:
        one_d = isinstance(first_conv(model), torch.nn.Conv1d)
    except ValueError:
        raise ConfigError(f"{uri}: the model has no convolution; it is not one of this pipeline's") from None
    if one_d != (bundle.train.X.ndim == 3):
        kind = "the 1D detector (for synthetic sequences)" if one_d else "an image model"
        data = "1D sequences" if bundle.train.X.ndim == 3 else f"{'x'.join(map(str, bundle.input_shape))} images"
        raise ConfigError(f"{uri} is {kind}, but {bundle.name} holds {data}; drop --dataset/--data-uri to use "
                          "the data of the run that trained it")


@dataclass(frozen=True)
class LoadedModel:
    """A logged model with the data and provenance of the run that trained it."""

    cfg: Any  # the stage config, resolved, data options inherited from the source run
    uri: str  # runs:/<id>/<model name>
    source_run_id: str | None
    source_params: dict[str, Any]  # the source run's params and config.json
    source_tags: dict[str, str]
    model: torch.nn.Module
    device: torch.device
    bundle: DataBundle  # synthetic: a fresh set; images: the run's data with its test split
    tags: dict[str, Any]  # for the stage's own run

    @property
    def label(self) -> str:
        """What the model is, for run names: 'F4 k5 s0' ('digits F6,16 k5 s0' on images), else its name."""
        t = self.tags
        if not (t.get("filters") and t.get("kernel_size")):
            return self.uri.rstrip("/").rsplit("/", 1)[-1]
        shape = shape_label(tuple(t["filters"].split(",")), tuple(t["kernel_size"].split(",")))
        data = "" if t["dataset"] == "synthetic" else f"{t['dataset']} "
        return f"{data}{shape} s{t.get('seed')}"

    @property
    def what(self) -> str:
        """The model and the run that trained it, for descriptions: `detector1d-F4-k5` (run train F4 k5 s0)."""
        name = self.uri.rstrip("/").rsplit("/", 1)[-1]
        source = self.source_tags.get("mlflow.runName")
        return f"`{name}`" + (f" (run {source})" if source else "")


def open_model(cfg: Any, echo: Callable[[str], None] = print) -> LoadedModel:
    """Load ``cfg``'s model and the data to look at it with (evaluate and inspect start here)."""
    runs.configure(cfg.tracking_uri, cfg.experiment_name)
    uri = resolve_model_uri(cfg)
    src = source_run_id(uri)
    src_params, src_tags = source_run(src, echo)
    cfg = resolve(inherit(cfg, src_params))
    device = pick_device(cfg.device)
    model = load_module(uri, device)
    bundle = test_data(cfg)
    check_model_fits(model, bundle, uri)
    tags = {"recipe": cfg.recipe, "dataset": bundle.name, "model": src_tags.get("model", type(model).__name__),
            "source_run_id": src, "model_uri": uri, "seed": src_tags.get("seed"),
            "filters": src_tags.get("filters"), "kernel_size": src_tags.get("kernel_size"), "data_uri": cfg.data_uri}
    return LoadedModel(cfg, uri, src, src_params, src_tags, model, device, bundle, tags)
