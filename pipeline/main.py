"""Entry point `main`: the complete offline study on the synthetic data, as nested runs.

prepare-data -> train with 3 filters -> train with 4 filters -> evaluate both -> a small
sweep over filters x kernel size, under one parent run. ``mlflow run . --env-manager local`` with no ``-P`` runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline.config.parsing import as_params
from pipeline.config.stages import EvaluateConfig, MainConfig, PrepareDataConfig, TrainConfig
from pipeline.config.studies import SweepConfig
from pipeline.data import prepare as prepare_data
from pipeline.evaluate import stage as evaluate
from pipeline.sweep import stage as sweep
from pipeline.tracking import runs
from pipeline.tracking.redact import redact
from pipeline.tracking.rescue import Keep
from pipeline.train import stage as train


@dataclass(frozen=True)
class MainResult:
    run_id: str
    train: dict[int, train.TrainResult]  # by filter count
    evaluate: dict[int, evaluate.EvalResult]
    sweep: sweep.SweepResult | None


def run(cfg: MainConfig, echo: Callable[[str], None] = print) -> MainResult:
    uri = runs.configure(cfg.tracking_uri, cfg.experiment_name)
    with runs.stage_run("main", run_name="main", tags={"recipe": "synthetic", "dataset": "synthetic",
                                                             "model": "detector1d", "seed": cfg.seed},
                         keep=Keep(config=cfg)) as parent:
        runs.log_params_safely(as_params(cfg))
        echo("== prepare-data")
        prepared = prepare_data.run(PrepareDataConfig(), echo=echo)
        trained: dict[int, train.TrainResult] = {}
        evaluated: dict[int, evaluate.EvalResult] = {}
        for f in (cfg.small_filters, cfg.large_filters):
            echo(f"== train: {f} filters, seed {cfg.seed}")
            trained[f] = train.run(TrainConfig(data_uri=prepared.data_uri, filters=(f,), seed=cfg.seed,
                                               epochs=cfg.epochs), echo=echo)
        for f, result in trained.items():
            echo(f"== evaluate: {f} filters")
            evaluated[f] = evaluate.run(EvaluateConfig(model_uri=result.model_uri), echo=echo)
        echo("")
        echo("filters  final train loss  train acc  test acc")
        for f in trained:
            echo(f"{f:7d}  {trained[f].final['train_loss']:16.4f}  {trained[f].final['train_accuracy']:9.3f}"
                 f"  {evaluated[f].test_accuracy:8.3f}")
        swept = None
        if cfg.sweep_trials:
            echo(f"== sweep: {cfg.sweep_trials} trials of P(success) over {cfg.sweep_seeds} seeds each")
            swept = sweep.run(SweepConfig(study_name=f"main-{parent.info.run_id[:8]}", storage=cfg.storage,
                                          n_trials=cfg.sweep_trials, seeds=cfg.sweep_seeds, epochs=cfg.epochs,
                                          progress=False, worker_index=0), echo=echo)
            if swept.best:
                p = swept.best[0]["params"]
                echo(f"best configuration: {p['filters']} filters, kernel size {p['kernel_size']} "
                     f"(P(success) = {swept.best[0]['values'][0]:.2f} over {cfg.sweep_seeds} seeds)")
        run_id = parent.info.run_id
    echo("")
    echo(f"parent run {run_id} in {redact(uri)}")
    echo(f"look at the results with:  mlflow ui --backend-store-uri {redact(uri)}   (then open http://127.0.0.1:5000)")
    return MainResult(run_id, trained, evaluated, swept)
