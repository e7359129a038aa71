"""The data a stage config names: the synthetic train/validation sets, or an image data set."""
from __future__ import annotations

from typing import Any

from pipeline.data.bundle import DataBundle, Split
from pipeline.data.images import IMAGE_DATASETS, image_bundle
from pipeline.data.synthetic import make_synthetic
from pipeline.errors import ConfigError


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
    """The data a (resolved) stage config asks for: its data set name with its options."""
    dataset = cfg.dataset or "synthetic"
    if dataset == "synthetic":
        if cfg.data_seed == cfg.val_seed:
            raise ConfigError("--val-seed must differ from --data-seed (the validation set must be held out)")
        return synthetic_bundle(cfg.n, cfg.width, cfg.data_seed, cfg.val_seed)
    if dataset in IMAGE_DATASETS:
        return image_bundle(cfg)
    raise ConfigError(f"unknown dataset {dataset!r}")
