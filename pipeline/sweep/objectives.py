"""What a trial maximises: P(success) of the 1D detector over seeds (``success``, reported every
``--report-every`` epochs), or the validation accuracy of an image model (``accuracy``,
reported every epoch): with ``--seeds S`` the mean over S seeds trained at once, whose spread
the trial keeps as attributes and metrics. Both report to Optuna as they go (intermediate
values, step = epoch), so the pruner can stop a weak trial early.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.config.studies import CapacityConfig, SweepConfig
from pipeline.errors import ConfigError
from pipeline.sweep.space import layer_values
from pipeline.sweep.trials import TrialRun

Objective = Callable[[Any, TrialRun, dict], tuple[float, ...]]


def success_objective(cfg: SweepConfig) -> Objective:
    """P(success) of one (F, k) over seeds 0..S-1, through the capacity study's own seed_table."""
    from pipeline.capacity.outcomes import check_memory, seed_table
    from pipeline.capacity.stats import p_success
    from pipeline.models.detector import Detector1d
    from pipeline.models.registry import count_parameters

    settings = capacity_settings(cfg)
    check_memory(max(cfg.filters), max(cfg.kernel_sizes), cfg.seed_count, settings)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        (f,), (k,) = layer_values(point, cfg)
        s = dataclasses.replace(settings, lr=point["lr"]) if "lr" in point else settings

        def on_progress(epoch: int, p: float) -> None:  # P(success) so far: Optuna's intermediate values
            run.metrics.log({"p_success": p}, step=epoch)
            report(trial, cfg, p, epoch, s.epochs)

        table = seed_table(f, k, list(cfg.trial_seeds), s, on_progress=on_progress, every=cfg.report_every)
        est = p_success(table, cfg.tau)
        n_params = count_parameters(Detector1d(f, k))
        run.metrics.log({
            "p_success": est.p, "p_success_low": est.lo, "p_success_high": est.hi,
            "n_success": est.k, "n_seeds": est.n, "num_parameters": n_params,
            "median_final_loss": float(table["final_loss"].median()),
            "mean_test_accuracy": float(table["test_accuracy"].mean()),
        }, step=s.epochs)
        trial.set_user_attr("p_success_interval", [est.lo, est.hi])
        trial.set_user_attr("num_parameters", n_params)
        return (est.p, float(n_params)) if cfg.multi_objective else (est.p,)

    return objective


def report(trial: Any, cfg: SweepConfig, value: float, epoch: int, last: int) -> None:
    """An intermediate value (step = epoch); stop the trial if the pruner says so (not at the ``last``
    epoch: a finished trial keeps its value)."""
    import optuna

    if cfg.multi_objective:  # Optuna reports and prunes single-objective studies only
        return
    trial.report(value, epoch)
    if epoch < last and trial.should_prune():
        raise optuna.TrialPruned(f"pruned at epoch {epoch}: {value:.4g} so far")


def capacity_settings(cfg: SweepConfig) -> Any:
    """The capacity study's settings for this sweep: same data, optimiser and epochs."""
    from pipeline.capacity.outcomes import Settings

    settings = Settings.from_config(cfg)
    return dataclasses.replace(settings, epochs=cfg.epochs or CapacityConfig().epochs)


def accuracy_objective(cfg: SweepConfig) -> Objective:
    from pipeline.data.load import load_bundle
    from pipeline.train.batching import pick_device
    from pipeline.train.stage import check_model

    base = resolve(train_config(cfg))
    bundle = load_bundle(base)  # once per worker: every trial sees the same data
    device = pick_device(base.device)
    layers = len(base.filters)  # the largest point of the space must build and fit: checked before any trial
    check_model(resolve(dataclasses.replace(base, filters=(max(cfg.filters),) * layers,
                                            kernel_size=(max(cfg.kernel_sizes),) * layers)), bundle,
                copies=cfg.seed_count)
    seeds = cfg.trial_seeds
    if bundle.train.X.ndim != 4 and len(seeds) > 1:
        raise ConfigError("--seeds with --objective accuracy trains image nets; on the synthetic data use "
                          "--objective success")
    # one seed: `pipeline train`'s own loop, so that the trial is exactly `pipeline train --seed s`
    train = _seeds_trainer(bundle, seeds, device) if len(seeds) > 1 else _one_seed_trainer(bundle, device)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        filters, kernels = layer_values(point, cfg)
        tcfg = resolve(dataclasses.replace(base, filters=filters, kernel_size=kernels,
                                           **({"lr": point["lr"]} if "lr" in point else {})))

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            run.metrics.log(values, step=epoch)
            report(trial, cfg, values["val_accuracy"], epoch, tcfg.epochs)

        acc, n_params, spread = train(tcfg, on_epoch)
        trial.set_user_attr("num_parameters", n_params)
        for name, value in spread.items():
            trial.set_user_attr(name, value)
        run.metrics.log({"num_parameters": n_params, **{k: v for k, v in spread.items() if np.isscalar(v)}}, step=0)
        return (acc, float(n_params)) if cfg.multi_objective else (acc,)

    return objective


def _seeds_trainer(bundle: Any, seeds: tuple[int, ...], device: Any) -> Callable:
    """Train a trial's seeds at once; epochs report the means (and the spread of val_accuracy)."""
    from pipeline.capacity.images.trainer import train_seeds

    def train(tcfg: TrainConfig, on_epoch: Callable) -> tuple[float, int, dict]:
        def report(epoch: int, values: dict[str, np.ndarray]) -> None:
            on_epoch(epoch, {**{k: float(v.mean()) for k, v in values.items()},
                             "val_accuracy_std": float(values["val_accuracy"].std())})

        result = train_seeds(tcfg, bundle, seeds, device, on_epoch=report)
        val = result.final("val_accuracy")
        _, test = result.score(bundle.test, tcfg, bundle)
        spread = {"seeds": len(seeds), "val_accuracy_std": float(val.std()), "val_accuracy_min": float(val.min()),
                  "val_accuracy_max": float(val.max()), "val_accuracy_per_seed": [round(float(v), 6) for v in val],
                  "test_accuracy_mean": float(test.mean()), "test_accuracy_std": float(test.std())}
        return float(val.mean()), result.num_parameters(), spread

    return train


def _one_seed_trainer(bundle: Any, device: Any) -> Callable:
    """One model through `pipeline train`'s loop."""
    from pipeline.models.registry import count_parameters
    from pipeline.train.loop import fit
    from pipeline.train.stage import make_model

    def train(tcfg: TrainConfig, on_epoch: Callable) -> tuple[float, int, dict]:
        model = make_model(tcfg, bundle).to(device)
        history = fit(model, bundle, tcfg, device, on_epoch=on_epoch, echo=lambda s: None)
        return history.val_accuracy[-1], count_parameters(model), {}

    return train


def train_config(cfg: SweepConfig) -> TrainConfig:
    """The train config that each accuracy trial starts from (recipe, data, epochs)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
              if f.name in train_fields and f.name not in ("filters", "kernel_size", "threads")}
    shared["seed"] = 0 if cfg.objective == "success" else cfg.sampler_seed  # the first of trial_seeds
    shared["print_every"] = 0
    shared["image_every"] = 0
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) is not None:
            shared[name] = getattr(cfg, name)
    return TrainConfig(**shared)
