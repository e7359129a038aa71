"""Entry point `main`: the complete offline study on the synthetic data, as nested runs.

prepare-data -> train with 3 filters -> train with 4 filters -> evaluate both -> a quick
capacity grid (P(success) over F x k) -> a small Optuna sweep over filters x kernel size,
under one parent run. ``mlflow run . --env-manager local`` with no ``-P`` runs it.

The parent is the study's front page in the MLflow UI: its description tells the result in
words, its metrics are the numbers behind it (final losses, P(success) per configuration,
the best trial), and its figures compare the runs under it (learning curves of both train
runs, P(success) against filters, the sweep's history and contour).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, TypeVar

from pipeline.capacity import stage as capacity
from pipeline.capacity.stats import is_success
from pipeline.capacity.story import headline
from pipeline.config.stages import EvaluateConfig, MainConfig, PrepareDataConfig, TrainConfig
from pipeline.config.studies import CapacityConfig, SweepConfig
from pipeline.data import prepare as prepare_data
from pipeline.evaluate import stage as evaluate
from pipeline.sweep import stage as sweep
from pipeline.sweep.report import best_trials, state_counts
from pipeline.sweep.study import finished_trials, load_existing
from pipeline.tracking import artifacts, identity, provenance, reuse as reading, runs, serving
from pipeline.tracking.drawing import Drawing
from pipeline.tracking.links import ui_link
from pipeline.tracking.metrics import log_metrics
from pipeline.tracking.redact import redact
from pipeline.tracking.rescue import Keep
from pipeline.train import stage as train
from pipeline.train.loop import History


R = TypeVar("R")


@dataclass
class Reuse:
    """Each stage of ``main`` once per configuration, code and data: a FINISHED run in the experiment that
    ``main`` asked the same of (``identity.request``) is reused, unless ``--rerun`` or a dirty tree."""

    cfg: MainConfig
    experiment_id: str
    echo: Callable[[str], None]
    reused: dict[str, str] = field(default_factory=dict)  # stage label -> run id

    def __post_init__(self) -> None:
        if not self.cfg.rerun and identity.code_version()[1]:
            self.echo("the code has uncommitted changes: every stage runs again (runs are reused only for a commit)")

    def __call__(self, label: str, stage_cfg: Any, fresh: Callable[[Any], R], load: Callable[[str], R],
                 done: Callable[[], bool] = lambda: True) -> R:
        """The stage's result: ``load`` of the run found, else ``fresh`` (also where ``done()`` says the found
        run's work is not whole: a sweep whose study holds fewer trials than it asks for resumes it)."""
        key = identity.key_of(stage_cfg, identity.inputs_digest(stage_cfg))
        found = None if self.cfg.rerun else identity.find_requested(key, self.experiment_id)
        if found is None or not done():
            with identity.first_run_tags({identity.REQUEST: key}):
                return fresh(stage_cfg)
        run_id = found.info.run_id
        self.echo(f"reused run {run_id} ({found.info.run_name}): same configuration, code and data "
                  "(--rerun to run it again)")
        self.reused[label] = run_id
        return load(run_id)

    def front_page(self) -> None:
        """Tag the parent with the reused runs and add them, linked, to its description."""
        if not self.reused:
            return
        reading.tag_reused(self.reused)
        links = ", ".join(f"[{label}]({ui_link(self.experiment_id, run_id)})" for label, run_id in self.reused.items())
        provenance.append_description(f"\n**Reused** (same configuration, code and data as a finished run, not run "
                                      f"again; `--rerun` runs them again): {links}.")


def reused_training(run_id: str) -> train.TrainResult:
    """A finished train run read back: its model, last metrics and curves (the model itself is not loaded)."""
    last = reading.last_metrics(run_id)
    history = History(**reading.curves(run_id, ("train_loss", "train_accuracy", "val_loss", "val_accuracy")))
    final = {k: last[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in last}
    return train.TrainResult(run_id, serving.model_uri_of_run(run_id), final, history, None)


def reused_evaluation(run_id: str) -> evaluate.EvalResult:
    last = reading.last_metrics(run_id)
    return evaluate.EvalResult(run_id, last["test_loss"], last["test_accuracy"], None, None,
                               last.get("exact_accuracy"), last.get("unseen_accuracy"))


def reused_sweep(cfg: MainConfig) -> Callable[[str], sweep.SweepResult]:
    """A finished sweep run read back: its study's best trial(s) and counts (its figures stay on the run)."""
    def load(run_id: str) -> sweep.SweepResult:
        study = load_existing(sweep_config(cfg))
        return sweep.SweepResult(run_id, study.study_name, redact(cfg.storage), best_trials(study),
                                 state_counts(study), 0.0)
    return load


def resumed_sweep(cfg: MainConfig, sweep_cfg: SweepConfig) -> SweepConfig:
    """The sweep to run: the trials that a study left short (a stopped sweep) lacks; else (a whole study,
    ``--rerun``, a new one) all of ``--sweep-trials``, added to the study."""
    short = cfg.sweep_trials - finished_trials(sweep_cfg)
    return sweep_cfg if cfg.rerun or not 0 < short < cfg.sweep_trials else replace(sweep_cfg, n_trials=short)


def reused_grid(run_id: str) -> capacity.CapacityResult:
    """A finished capacity run read back from its tables."""
    from pipeline.tracking import studies

    table, summary, lottery = (studies.load_table(run_id, f"tables/{name}.csv")
                               for name in ("seeds", "summary", "lottery_fit"))
    return capacity.CapacityResult(run_id, table, summary, lottery, float("nan"))


@dataclass(frozen=True)
class MainResult:
    run_id: str
    train: dict[int, train.TrainResult]  # by filter count
    evaluate: dict[int, evaluate.EvalResult]
    capacity: capacity.CapacityResult | None
    sweep: sweep.SweepResult | None


def study_name(cfg: MainConfig) -> str:
    """The sweep's study: named by the settings that define it, so that `make run` again resumes it."""
    return f"main-{cfg.epochs}ep-{cfg.sweep_seeds}seeds"


def sweep_config(cfg: MainConfig) -> SweepConfig:
    return SweepConfig(study_name=study_name(cfg), storage=cfg.storage, n_trials=cfg.sweep_trials,
                       seeds=cfg.sweep_seeds, epochs=cfg.epochs, progress=False, worker_index=0)  # one worker


def train_and_measure(cfg: MainConfig, reuse: Reuse, echo: Callable[[str], None]) -> tuple[dict, dict, Any]:
    """prepare-data, train and evaluate both filter counts, the capacity grid: each run, or reused."""
    small, large = cfg.small_filters, cfg.large_filters
    echo("== prepare-data")
    data_uri = reuse("prepare-data", PrepareDataConfig(), lambda c: prepare_data.run(c, echo=echo).data_uri,
                     lambda run_id: f"runs:/{run_id}/data")
    trained: dict[int, train.TrainResult] = {}
    evaluated: dict[int, evaluate.EvalResult] = {}
    for f in (small, large):
        echo(f"== train: {f} filters, seed {cfg.seed}")
        trained[f] = reuse(f"train F{f}", TrainConfig(data_uri=data_uri, filters=(f,), seed=cfg.seed,
                                                      epochs=cfg.epochs), lambda c: train.run(c, echo=echo),
                           reused_training)
    for f, result in trained.items():
        echo(f"== evaluate: {f} filters")
        evaluated[f] = reuse(f"evaluate F{f}", EvaluateConfig(model_uri=result.model_uri),
                             lambda c: evaluate.run(c, echo=echo), reused_evaluation)
    echo("")
    echo("filters  final train loss  train acc  test acc  unseen acc")
    for f in trained:
        echo(f"{f:7d}  {trained[f].final['train_loss']:16.4f}  {trained[f].final['train_accuracy']:9.3f}"
             f"  {evaluated[f].test_accuracy:8.3f}  {evaluated[f].unseen_accuracy:10.3f}")
    grid = None
    if cfg.capacity_seeds:
        echo(f"== capacity: P(success) over {cfg.capacity_seeds} seeds per configuration")
        grid = reuse("capacity", CapacityConfig(seeds=cfg.capacity_seeds, epochs=cfg.epochs),
                     lambda c: capacity.run(c, echo=echo), reused_grid)
    return trained, evaluated, grid


def run(cfg: MainConfig, echo: Callable[[str], None] = print) -> MainResult:
    drawing = Drawing()  # its helper process loads matplotlib now, for the front page's figures at the end
    uri = runs.configure(cfg.tracking_uri, cfg.experiment_name)
    if cfg.sweep_trials:  # what the closing sweep would refuse is found now, not after all the training
        sweep.preflight(sweep_config(cfg))
    small, large = cfg.small_filters, cfg.large_filters
    with runs.stage_run("main", run_name=f"main F{small} vs F{large} s{cfg.seed}",
                        tags={"recipe": "synthetic", "dataset": "synthetic", "model": "detector1d",
                              "seed": cfg.seed}, keep=Keep(config=cfg)) as parent, drawing:
        provenance.log_config(cfg)
        provenance.describe("The whole offline study, running: prepare-data, train and evaluate the detector with "
                            f"{small} and {large} filters, a capacity grid, an Optuna sweep.")
        reuse = Reuse(cfg, parent.info.experiment_id, echo)
        trained, evaluated, grid = train_and_measure(cfg, reuse, echo)
        swept = None
        if cfg.sweep_trials:
            echo(f"== sweep: {cfg.sweep_trials} trials of P(success) over {cfg.sweep_seeds} seeds each")
            swept = reuse("sweep", sweep_config(cfg), lambda c: sweep.run(resumed_sweep(cfg, c), echo=echo),
                          reused_sweep(cfg), done=lambda: finished_trials(sweep_config(cfg)) >= cfg.sweep_trials)
            if swept.best:
                p = swept.best[0]["params"]
                echo(f"best configuration: {p['filters']} filters, kernel size {p['kernel_size']} "
                     f"(P(success) = {swept.best[0]['values'][0]:.2f} over {cfg.sweep_seeds} seeds)")
        front_page(cfg, trained, evaluated, grid, swept, drawing, echo)
        reuse.front_page()
        run_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    echo("")
    echo(f"parent run {run_id} in {redact(uri)}")
    echo(f"look at the results with:  mlflow ui --backend-store-uri {redact(uri)}   (or make ui), then open")
    echo(f"  {ui_link(experiment_id, run_id)}")
    return MainResult(run_id, trained, evaluated, grid, swept)


def front_page(cfg: MainConfig, trained: dict, evaluated: dict, grid, swept, drawing: Drawing,
               echo: Callable[[str], None] = print) -> None:
    """The parent's description, metrics and figures (drawn by ``drawing``'s helper process, logged when its
    block ends): the study's result at a glance."""
    metrics: dict[str, float] = {}
    for f, result in trained.items():
        metrics[f"train_loss_F{f}"] = result.final["train_loss"]
        metrics[f"test_accuracy_F{f}"] = evaluated[f].test_accuracy
        metrics[f"unseen_accuracy_F{f}"] = evaluated[f].unseen_accuracy
    curves = {f"{f} filters, seed {cfg.seed}": (list(r.history.train_loss), list(r.history.val_accuracy))
              for f, r in trained.items()}
    drawing.figure("figures/learning_curves.png", "pipeline.tracking.figures:compared_curves", curves)
    tau = CapacityConfig().tau
    lines = ["**Does the lab's tiny ConvNet get stuck?** The 1D detector Conv1d(1, F, 5) → ReLU → max pool → "
             "Linear(F, 1) learns to spot the pattern 0, +1, 0 (the runs under this one hold the details)."]
    contrast = "; ".join(f"with {f} filters the training loss ended at {r.final['train_loss']:.3f} at "
                         f"{r.final['train_accuracy']:.0%} training accuracy ({outcome(r.final, tau)}; accuracy "
                         f"{evaluated[f].unseen_accuracy:.3f} on the sequences it never trained on)"
                         for f, r in trained.items())
    lines.append(f"- **One seed ({cfg.seed}), {cfg.epochs} epochs:** {contrast}.")
    if grid is not None:
        from pipeline.capacity.story import summary_metrics

        metrics.update(summary_metrics(grid.summary))
        drawing.figure("figures/p_success_vs_filters.png", "pipeline.capacity.plots:curves_figure", grid.summary,
                       grid.lottery)
        lines.append(f"- **Over {cfg.capacity_seeds} seeds** (capacity grid): "
                     f"{headline(grid.summary, tau, focus=(cfg.large_filters, cfg.small_filters))}")
    if swept is not None and swept.best:
        b = swept.best[0]
        metrics["best_value"] = b["values"][0]
        params = ", ".join(f"{k} = {v}" for k, v in b["params"].items())
        lines.append(f"- **Optuna sweep** (study `{swept.study_name}`, {sum(swept.counts.values())} trials): best "
                     f"P(success) = {b['values'][0]:.2f} over {cfg.sweep_seeds} seeds, at {params}.")
        artifacts.copy_figures(swept.run_id, {"optimization_history.png": "sweep_history.png",
                                              "contour.png": "sweep_contour.png"}, echo)
    lines.append("\nFigures: the learning curves of the train runs, P(success) against filters with 95% Wilson "
                 "bands, the sweep's history and contour.")
    log_metrics(metrics)
    provenance.describe("\n".join(lines[:1]), "\n".join(lines[1:]))


def outcome(final: dict[str, float], tau: float) -> str:
    """What the capacity study's definition calls a training: 'succeeded', or 'failed' and why."""
    if is_success(final["train_loss"], final["train_accuracy"], tau):
        return "succeeded"
    why = [what for what, found in ((f"loss ≥ {tau:g}", final["train_loss"] >= tau),
                                    ("a training error", final["train_accuracy"] < 1)) if found]
    return f"failed: {' and '.join(why)}"
