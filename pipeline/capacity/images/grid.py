"""The image capacity grid: what a grid value F means for a net's conv layers, and one cell
(F, k) trained from every seed at once, as tidy tables.

A grid value F sets the first conv layer's filter count; ``--filter-rule`` says what the
other layers get: ``all`` F as well, ``scale`` the recipe's counts scaled by F over the
recipe's first (LeNet's 6, 16 at F = 3: 3, 8), ``first`` the recipe's own. The kernel size
k applies to every conv layer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from pipeline.capacity.images.trainer import SeedsResult, train_seeds
from pipeline.config.image_study import ImageStudyFields
from pipeline.config.stages import TrainConfig
from pipeline.data.bundle import DataBundle
from pipeline.errors import ConfigError
from pipeline.models.convnets import LAYOUTS
from pipeline.train.stage import make_model

SEED_COLUMNS = ["filters", "kernel_size", "seed", "num_parameters", "final_loss", "train_accuracy", "val_loss",
                "val_accuracy", "test_loss", "test_accuracy", "layer_filters", "layer_kernel_sizes"]
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # per epoch, in tables/curves.csv


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid."""

    filters: int  # the grid value F (first conv layer's filter count)
    kernel_size: int  # k, every conv layer
    config: TrainConfig  # resolved: what `pipeline train` would train (seed aside)
    num_parameters: int

    @property
    def layer_filters(self) -> tuple[int, ...]:
        return tuple(self.config.filters)


def layer_filters(f: int, rule: str, recipe: tuple[int, ...]) -> tuple[int, ...]:
    """Filter counts per conv layer for grid value ``f`` (see the module docstring)."""
    if rule == "all":
        return (f,) * len(recipe)
    if rule == "first":
        return (f, *recipe[1:])
    if rule == "scale":
        return (f, *(max(1, round(f * r / recipe[0])) for r in recipe[1:]))
    raise ConfigError(f"unknown filter rule {rule!r}")


def cells(study: ImageStudyFields, base: TrainConfig, bundle: DataBundle) -> list[Cell]:
    """Every (F, k) of the study, kernel size outermost; each model is built once, so a shape that
    does not fit fails here, before any training."""
    layout = LAYOUTS.get(base.model)
    if layout is None:
        raise ConfigError(f"the image capacity study trains a 2D net ({', '.join(LAYOUTS)}), not {base.model}")
    recipe = tuple(base.filters) if len(base.filters or ()) == len(layout.pools) else layout.filters
    out = []
    for k in study.kernel_sizes:
        for f in study.filters:
            cfg = dataclasses.replace(base, filters=layer_filters(f, study.filter_rule, recipe), kernel_size=(k,))
            with torch.random.fork_rng(devices=[]):
                model = make_model(dataclasses.replace(cfg, seed=0), bundle)
            out.append(Cell(f, k, cfg, sum(p.numel() for p in model.parameters())))
    return out


def run_cell(cell: Cell, bundle: DataBundle, seeds: Sequence[int], device: torch.device,
             on_epoch: Callable | None = None, strategy: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame, SeedsResult]:
    """Train one cell from every seed (``strategy``: see ``strategy.py``): (per-seed table, curves, the result)."""
    result = train_seeds(cell.config, bundle, seeds, device, on_epoch=on_epoch, strategy=strategy)
    test_loss, test_acc = result.score(bundle.test, cell.config, bundle)
    table = pd.DataFrame({
        "filters": cell.filters,
        "kernel_size": cell.kernel_size,
        "seed": np.asarray(result.seeds, dtype=np.int64),
        "num_parameters": cell.num_parameters,
        "final_loss": result.final("train_loss"),
        "train_accuracy": result.final("train_accuracy"),
        "val_loss": result.final("val_loss"),
        "val_accuracy": result.final("val_accuracy"),
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "layer_filters": ",".join(map(str, cell.layer_filters)),
        "layer_kernel_sizes": ",".join(str(cell.kernel_size) for _ in cell.layer_filters),
    }, columns=SEED_COLUMNS)
    return table, curve_table(cell, result), result


def curve_table(cell: Cell, result: SeedsResult) -> pd.DataFrame:
    """One row per (seed, epoch) with the per-epoch metrics of `pipeline train`."""
    S, E = result.history["train_loss"].shape
    return pd.DataFrame({
        "filters": cell.filters,
        "kernel_size": cell.kernel_size,
        "seed": np.repeat(np.asarray(result.seeds, dtype=np.int64), E),
        "epoch": np.tile(np.arange(1, E + 1), S),
        **{k: result.history[k].reshape(-1) for k in CURVES},
    })
