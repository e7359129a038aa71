"""Stage `sweep`: an Optuna study over filter counts and kernel sizes, tracked in MLflow.

Run as ``pipeline sweep --study-name NAME [--storage URL] --n-trials N`` (several workers
may run the same command at once) or ``mlflow run . -e sweep``. Writes one parent run per
invocation (tagged with the study and the storage, password hidden) holding the best
trial(s), the trials table and Optuna's plots, and one child run per trial with its
params, intermediate values (step = epoch), final values and its real state
(pruned -> KILLED, failed -> FAILED).

Objectives: ``success`` trains S seeds of the 1D detector at once through the capacity
study's batched trainer and maximises P(success); ``accuracy`` trains one image model and
maximises validation accuracy, reporting each epoch to a median pruner.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

from pipeline import tracking
from pipeline.config import ConfigError, SweepConfig, TrainConfig, as_params, resolve
from pipeline.sweep_report import best_trials, format_summary, log_study_summary, state_counts
from pipeline.sweep_space import layer_values, make_pruner, make_sampler, model_name, param_names, suggest
from pipeline.stores import redact
from pipeline.sweep_storage import make_storage


# --------------------------------------------------------------------------- trial runs
class TrialRun:
    """The MLflow child run of one trial, written through the client (one call per batch)."""

    def __init__(self, client: Any, experiment_id: str, parent_id: str, trial: Any, cfg: SweepConfig):
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self.client = client
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_id,
            MLFLOW_RUN_NAME: f"trial-{trial.number}",
            "stage": "sweep-trial",
            "study_name": cfg.study_name,
            "trial_number": str(trial.number),
            "objective": cfg.objective,
            "recipe": cfg.recipe,
            "dataset": cfg.dataset or "synthetic",
            "model": model_name(cfg),
            "seed": str(cfg.sampler_seed),
        }
        commit = tracking.git_commit()
        if commit:
            tags["git_commit"] = commit
        self.run_id = client.create_run(experiment_id, tags=tags).info.run_id
        trial.set_user_attr("mlflow_run_id", self.run_id)
        trial.set_user_attr("mlflow_parent_run_id", parent_id)
        self.metrics = tracking.MetricBuffer(self.run_id, flush_every=5.0)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def finish(self, status: str, final: dict[str, float] | None = None) -> None:
        if final:
            self.metrics.log(final, step=0)
        self.metrics.flush()
        self.client.set_terminated(self.run_id, status)


def close_stale_runs(tracking_uri: str, frozen_trial: Any) -> None:
    """A dead worker's trial: end its MLflow child (and that worker's parent) as KILLED."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for key in ("mlflow_run_id", "mlflow_parent_run_id"):
        run_id = frozen_trial.user_attrs.get(key)
        if not run_id:
            continue
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "killed_reason", f"worker heartbeat lost (trial {frozen_trial.number})")
                client.set_terminated(run_id, "KILLED")
        except Exception:  # noqa: BLE001 - never let MLflow bookkeeping stop the retry
            pass


# --------------------------------------------------------------------------- objectives
def success_objective(cfg: SweepConfig) -> Callable[[Any, TrialRun, dict], tuple[float, ...]]:
    """P(success) of one (F, k) over seeds 0..S-1, through the capacity study's own seed_table."""
    from pipeline import capacity
    from pipeline.models import Detector1d, count_parameters

    settings = capacity_settings(cfg)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        (f,), (k,) = layer_values(point, cfg)
        s = dataclasses.replace(settings, lr=point["lr"]) if "lr" in point else settings
        table = capacity.seed_table(f, k, list(range(cfg.seeds)), s)
        est = capacity.p_success(table, cfg.tau)
        n_params = count_parameters(Detector1d(f, k))
        run.metrics.log({
            "p_success": est.p, "p_success_low": est.lo, "p_success_high": est.hi,
            "n_success": est.k, "n_seeds": est.n, "num_parameters": n_params,
            "median_final_loss": float(table["final_loss"].median()),
            "mean_test_accuracy": float(table["test_accuracy"].mean()),
        }, step=0)
        trial.set_user_attr("p_success_interval", [est.lo, est.hi])
        trial.set_user_attr("num_parameters", n_params)
        return (est.p, float(n_params)) if cfg.multi_objective else (est.p,)

    return objective


def capacity_settings(cfg: SweepConfig) -> Any:
    """The capacity study's settings for this sweep: same data, optimiser and epochs."""
    from pipeline import capacity
    from pipeline.config import CapacityConfig

    settings = capacity.Settings.from_config(cfg)
    return dataclasses.replace(settings, epochs=cfg.epochs or CapacityConfig().epochs)


def accuracy_objective(cfg: SweepConfig) -> Callable[[Any, TrialRun, dict], tuple[float, ...]]:
    import optuna

    from pipeline import train
    from pipeline.batching import pick_device
    from pipeline.data.bundle import load_bundle
    from pipeline.models import count_parameters

    base = resolve(_train_config(cfg))
    bundle = load_bundle(base)  # once per worker: every trial sees the same data
    device = pick_device(base.device)

    def objective(trial: Any, run: TrialRun, point: dict) -> tuple[float, ...]:
        filters, kernels = layer_values(point, cfg)
        tcfg = resolve(dataclasses.replace(base, filters=filters, kernel_size=kernels,
                                           **({"lr": point["lr"]} if "lr" in point else {})))
        model = train.make_model(tcfg, bundle).to(device)
        n_params = count_parameters(model)
        trial.set_user_attr("num_parameters", n_params)

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            run.metrics.log(values, step=epoch)
            if not cfg.multi_objective:  # Optuna prunes single-objective studies only
                trial.report(values["val_accuracy"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        history = train.fit(model, bundle, tcfg, device, on_epoch=on_epoch, echo=lambda s: None)
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


# --------------------------------------------------------------------------- the stage
@dataclass(frozen=True)
class SweepResult:
    run_id: str
    study_name: str
    storage: str  # redacted
    best: list[dict[str, Any]]  # best trial (or the Pareto front): number, params, values
    counts: dict[str, int]  # trials by state, whole study
    seconds: float  # this worker's time in study.optimize


def study_directions(cfg: SweepConfig) -> list[str]:
    return ["maximize", "minimize"] if cfg.multi_objective else ["maximize"]


def open_study(cfg: SweepConfig, tracking_uri: str) -> Any:
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry)

    def on_stale(study: Any, frozen_trial: Any) -> None:
        close_stale_runs(tracking_uri, frozen_trial)
        retry(study, frozen_trial)

    storage = make_storage(cfg.storage, cfg.heartbeat_interval or None, cfg.grace_period, on_stale)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and the summary say enough
    try:
        return optuna.create_study(
            study_name=cfg.study_name, storage=storage, load_if_exists=True,
            directions=study_directions(cfg), sampler=make_sampler(cfg), pruner=make_pruner(cfg),
        )
    except ValueError as err:  # e.g. the stored study has other directions
        raise ConfigError(f"study {cfg.study_name!r}: {err}") from None


Objective = Callable[[Any, TrialRun, dict], tuple[float, ...]]


def run(cfg: SweepConfig, echo: Callable[[str], None] = print,
        objective_factory: Callable[[SweepConfig], Objective] | None = None) -> SweepResult:
    """Run this worker's trials of the study; ``objective_factory`` replaces the objective (benchmarks)."""
    import mlflow
    import optuna
    import torch

    cfg = resolve(cfg)
    torch.set_num_threads(cfg.threads)
    if cfg.objective == "success" and (cfg.dataset or "synthetic") != "synthetic":
        raise ConfigError("the success objective runs on the synthetic data; use --objective accuracy for images")
    study = open_study(cfg, tracking.resolve_uri(cfg.tracking_uri))  # first: a bad storage fails fast
    tracking.configure(cfg.tracking_uri, cfg.experiment_name)
    if objective_factory is not None:
        inner = objective_factory(cfg)
    else:
        inner = success_objective(cfg) if cfg.objective == "success" else accuracy_objective(cfg)
    storage_text = redact(cfg.storage or "sqlite:///optuna.db")
    tags = {"study_name": cfg.study_name, "storage": storage_text, "objective": cfg.objective,
            "sampler": cfg.sampler, "recipe": cfg.recipe, "seed": cfg.sampler_seed,
            "dataset": cfg.dataset or "synthetic", "model": model_name(cfg)}
    with tracking.stage_run("sweep", run_name=f"sweep-{cfg.study_name}", tags=tags) as parent:
        params = as_params(cfg)
        params["storage"] = storage_text
        tracking.log_params_safely(params)
        client = mlflow.MlflowClient()
        experiment_id = parent.info.experiment_id

        def objective(trial: Any) -> Any:
            run = TrialRun(client, experiment_id, parent.info.run_id, trial, cfg)
            status = "FAILED"
            final: dict[str, float] = {}
            try:
                point = suggest(trial, cfg)
                run.log_params(point)
                values = inner(trial, run, point)
                final = {"objective_value": values[0]}
                status = "FINISHED"
                return values if cfg.multi_objective else values[0]
            except optuna.TrialPruned:
                status = "KILLED"
                raise
            finally:
                run.finish(status, final)

        t0 = time.monotonic()
        study.optimize(objective, n_trials=cfg.n_trials, timeout=cfg.timeout,
                       show_progress_bar=cfg.progress, gc_after_trial=False)
        elapsed = time.monotonic() - t0
        best = best_trials(study)
        counts = state_counts(study)
        mlflow.log_metrics({"worker_seconds": elapsed, **{f"trials_{k.lower()}": v for k, v in counts.items()}})
        log_study_summary(study, best, param_names(cfg)[0], cfg.objective)
        for b in best:
            if b["mlflow_run_id"]:
                client.set_tag(b["mlflow_run_id"], "best_trial", "true")
        run_id = parent.info.run_id
    echo(format_summary(cfg.study_name, storage_text, best, counts, study_directions(cfg)))
    return SweepResult(run_id, cfg.study_name, storage_text, best, counts, elapsed)
