"""A prepared data set as tensors, saved and loaded as one run artifact (``data/data.pt``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config import ConfigError
from pipeline.data.synthetic import make_synthetic

ARTIFACT_DIR = "data"
ARTIFACT_FILE = "data.pt"


@dataclass(frozen=True)
class Split:
    X: torch.Tensor  # (N, C, W) or (N, C, H, W)
    y: torch.Tensor  # (N, 1) float for binary tasks, (N,) int64 for classes

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass(frozen=True)
class DataBundle:
    """Train and validation splits plus what a model needs to know about them."""

    name: str  # data set name, e.g. "synthetic"
    task: str  # "binary" (one logit, BCE) or "multiclass"
    train: Split
    val: Split
    classes: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)  # generator options, provenance

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.X.shape[1:])

    def save(self, path: Path) -> Path:
        payload = {
            "name": self.name,
            "task": self.task,
            "classes": list(self.classes),
            "meta": self.meta,
            "train": (self.train.X, self.train.y),
            "val": (self.val.X, self.val.y),
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: Path) -> "DataBundle":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return cls(
                name=payload["name"],
                task=payload["task"],
                classes=tuple(payload["classes"]),
                meta=dict(payload["meta"]),
                train=Split(*payload["train"]),
                val=Split(*payload["val"]),
            )
        except (KeyError, TypeError, RuntimeError, EOFError, OSError) as err:
            raise ConfigError(f"{path}: not a prepared data file ({err.__class__.__name__}: {err})") from None


def synthetic_bundle(n: int, width: int, data_seed: int, val_seed: int) -> DataBundle:
    X, y = make_synthetic(n, width, data_seed)
    Xv, yv = make_synthetic(n, width, val_seed)
    return DataBundle(
        name="synthetic",
        task="binary",
        train=Split(X, y),
        val=Split(Xv, yv),
        classes=("no pattern", "0,+1,0"),
        meta={"n": n, "width": width, "data_seed": data_seed, "val_seed": val_seed},
    )


def load_bundle(cfg: Any) -> DataBundle:
    """The data a stage config asks for: its data set name with its options."""
    dataset = cfg.dataset or "synthetic"
    if dataset == "synthetic":
        if cfg.data_seed == cfg.val_seed:
            raise ConfigError("--val-seed must differ from --data-seed (the validation set must be held out)")
        return synthetic_bundle(cfg.n, cfg.width, cfg.data_seed, cfg.val_seed)
    raise ConfigError(f"unknown dataset {dataset!r}")


def replace_meta(bundle: DataBundle, **meta: Any) -> DataBundle:
    return dataclasses.replace(bundle, meta={**bundle.meta, **meta})
