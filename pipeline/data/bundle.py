"""A prepared data set as tensors, saved and loaded as one run artifact (``data/data.pt``).

Images stay uint8 in storage (a quarter of float32's memory, on the device when it fits);
``DataBundle.input_transform`` turns a drawn minibatch into the model's float input.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pipeline.errors import ConfigError

ARTIFACT_DIR = "data"
ARTIFACT_FILE = "data.pt"


@dataclass(frozen=True)
class Split:
    X: torch.Tensor  # (N, C, W) float, or (N, C, H, W) uint8 pixels / float in [0, 1]
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
    meta: dict[str, Any] = field(default_factory=dict)  # generator options, provenance, mean/std
    test: Split | None = None  # images: the official or seeded held-out test split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.X.shape[1:])

    def input_transform(self, device: torch.device | str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """Stored rows -> model input: uint8 pixels to [0, 1], then the per-channel standardisation if any.

        Float data without standardisation (the synthetic set) passes through untouched.
        """
        mean = std = None
        if self.meta.get("mean") is not None:
            shape = (1, -1) + (1,) * (self.train.X.ndim - 2)  # broadcast over (N, C, ...)
            mean = torch.tensor(self.meta["mean"], dtype=torch.float32, device=device).view(shape)
            std = torch.tensor(self.meta["std"], dtype=torch.float32, device=device).view(shape)

        def transform(x: torch.Tensor) -> torch.Tensor:
            if x.dtype == torch.uint8:
                x = torch.div(x, 255)  # one fused op: uint8 -> float32 in [0, 1]
            if mean is not None:
                x = (x - mean) / std
            return x

        return transform

    def save(self, path: Path) -> Path:
        payload = {
            "name": self.name,
            "task": self.task,
            "classes": list(self.classes),
            "meta": self.meta,
            "train": (self.train.X, self.train.y),
            "val": (self.val.X, self.val.y),
            "test": None if self.test is None else (self.test.X, self.test.y),
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
                test=Split(*payload["test"]) if payload.get("test") is not None else None,
            )
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError,
                AttributeError) as err:  # torch.load's of a foreign file, or a payload that is not ours
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConfigError(f"{path}: not a prepared data file ({err.__class__.__name__}: {reason})") from None
