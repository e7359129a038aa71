"""What a trial maximises: P(success) of the 1D detector over seeds (``success``, reported every
``--report-every`` epochs), or the validation accuracy of one image model (``accuracy``,
reported every epoch). Both report to Optuna as they go (intermediate values, step =
epoch), so the pruner can stop a weak trial early.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.config.studies import CapacityConfig, SweepConfig
from pipeline.sweep.space import layer_values
from pipeline.sweep.trials import TrialRun

Objective = Callable[[Any, TrialRun, dict], tuple[float, ...]]


def success_objective(cfg: SweepConfig) -> Objective:
    """P(success) of one (F, k) over seeds 0..S-1, through the capacity study's own seed_table."""
    from pipeline.capacity.outcomes import seed_table
    from pipeline.capacity.stats import p_success
    from pipeline.models.detector import Detector1d
    from pipeline.models.registry import count_parameters

    settings = capacity_settings(cfg)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        (f,), (k,) = layer_values(point, cfg)
        s = dataclasses.replace(settings, lr=point["lr"]) if "lr" in point else settings

        def on_progress(epoch: int, p: float) -> None:  # P(success) so far: Optuna's intermediate values
            run.metrics.log({"p_success": p}, step=epoch)
            report(trial, cfg, p, epoch, s.epochs)

        table = seed_table(f, k, list(range(cfg.seeds)), s, on_progress=on_progress, every=cfg.report_every)
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
    from pipeline.models.registry import count_parameters
    from pipeline.train.batching import pick_device
    from pipeline.train.loop import fit
    from pipeline.train.stage import make_model

    base = resolve(_train_config(cfg))
    bundle = load_bundle(base)  # once per worker: every trial sees the same data
    device = pick_device(base.device)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        filters, kernels = layer_values(point, cfg)
        tcfg = resolve(dataclasses.replace(base, filters=filters, kernel_size=kernels,
                                           **({"lr": point["lr"]} if "lr" in point else {})))
        model = make_model(tcfg, bundle).to(device)
        n_params = count_parameters(model)
        trial.set_user_attr("num_parameters", n_params)

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            run.metrics.log(values, step=epoch)
            report(trial, cfg, values["val_accuracy"], epoch, tcfg.epochs)

        history = fit(model, bundle, tcfg, device, on_epoch=on_epoch, echo=lambda s: None)
        acc = history.val_accuracy[-1]
        run.metrics.log({"num_parameters": n_params}, step=0)
        return (acc, float(n_params)) if cfg.multi_objective else (acc,)

    return objective


def _train_config(cfg: SweepConfig) -> TrainConfig:
    """The train config that each accuracy trial starts from (recipe, data, epochs)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
              if f.name in train_fields and f.name not in ("filters", "kernel_size", "threads")}
    shared["seed"] = cfg.sampler_seed
    shared["print_every"] = 0
    shared["image_every"] = 0
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) is not None:
            shared[name] = getattr(cfg, name)
    return TrainConfig(**shared)
