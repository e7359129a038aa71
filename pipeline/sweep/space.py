"""The sweep's search space: filter counts and kernel sizes per conv layer, samplers, pruners.

One conv layer (the 1D detector, mnist-small) has params ``filters`` and ``kernel_size``;
nets with several have ``filters_1``, ``kernel_size_1``, ... The learning rate is searched
on a log scale when ``--lr-min``/``--lr-max`` are given.
"""
from __future__ import annotations

import functools
from typing import Any

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.config.studies import SweepConfig


@functools.lru_cache(maxsize=8)
def recipe_train_config(recipe: str | None) -> TrainConfig:
    """The recipe's resolved train config (asked for on every trial, so built once)."""
    return resolve(TrainConfig(recipe=recipe))


def n_conv_layers(cfg: SweepConfig) -> int:
    if cfg.objective == "success":
        return 1
    return len(recipe_train_config(cfg.recipe).filters or (1,))


def model_name(cfg: SweepConfig) -> str:
    """The model that the trials train: the 1D detector, or the recipe's image net."""
    return "detector1d" if cfg.objective == "success" else str(recipe_train_config(cfg.recipe).model)


def param_names(cfg: SweepConfig) -> list[tuple[str, str]]:
    """(filters param, kernel param) per conv layer: 'filters'/'kernel_size' for one layer."""
    layers = n_conv_layers(cfg)
    if layers == 1:
        return [("filters", "kernel_size")]
    return [(f"filters_{i}", f"kernel_size_{i}") for i in range(1, layers + 1)]


def suggest(trial: Any, cfg: SweepConfig) -> dict[str, Any]:
    """Draw one point of the search space."""
    point: dict[str, Any] = {}
    for fname, kname in param_names(cfg):
        point[fname] = trial.suggest_categorical(fname, list(cfg.filters))
        point[kname] = trial.suggest_categorical(kname, list(cfg.kernel_sizes))
    if cfg.lr_min is not None:
        point["lr"] = trial.suggest_float("lr", cfg.lr_min, cfg.lr_max, log=True)
    return point


def grid_space(cfg: SweepConfig) -> dict[str, list]:
    space: dict[str, list] = {}
    for fname, kname in param_names(cfg):
        space[fname] = list(cfg.filters)
        space[kname] = list(cfg.kernel_sizes)
    return space


def layer_values(point: dict[str, Any], cfg: SweepConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    names = param_names(cfg)
    return tuple(point[f] for f, _ in names), tuple(point[k] for _, k in names)


def make_sampler(cfg: SweepConfig, seed: int | None = None) -> Any:
    """The sampler ``cfg`` names, seeded with ``seed`` (this worker's; default ``--sampler-seed``)."""
    import optuna

    seed = cfg.sampler_seed if seed is None else seed
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(cfg), seed=seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.multi_objective:
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.TPESampler(seed=seed)


def prunes(cfg: SweepConfig) -> bool:
    """Whether trials can be pruned: not in multi-objective studies, which Optuna cannot prune, nor
    with the grid sampler, whose point is a value for every combination."""
    return cfg.pruner == "median" and not cfg.multi_objective and cfg.sampler != "grid"


def make_pruner(cfg: SweepConfig) -> Any:
    """Optuna's median pruner, with Optuna's defaults unless told (``--pruner-startup-trials``,
    ``--pruner-warmup-epochs``), where trials can be pruned."""
    import optuna

    if prunes(cfg):
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_epochs)
    return optuna.pruners.NopPruner()


def metric_names(cfg: SweepConfig) -> list[str]:
    """What the objective values are called (``study.set_metric_names``): Optuna's plots and tables show them."""
    first = "p_success" if cfg.objective == "success" else "val_accuracy"
    return [first, "num_parameters"] if cfg.multi_objective else [first]
