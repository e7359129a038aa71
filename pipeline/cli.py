"""Click CLI: one thin command per stage (options -> config -> stage).

Options are generated from the stage's config dataclass, so defaults and help live in one
place (``config/``). Bad input ends in a one-line ``Error: ...`` and exit status 2.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from typing import Iterator

import click

from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.config.pattern import PatternCapacityConfig
from pipeline.config.options import config_options
from pipeline.config.recipes import RECIPES
from pipeline.config.stages import (EvaluateConfig, InspectConfig, MainConfig, PrepareDataConfig, ReproduceConfig,
                                    ServeConfig, TrainConfig)
from pipeline.config.studies import CapacityConfig, StudySummaryConfig, SweepConfig
from pipeline.errors import debugging, interrupt_signals
from pipeline.train.memory import keep_freed_memory
from pipeline.tracking.faults import report, report_thread_error
from pipeline.tracking.links import results_line
from pipeline.tracking.redact import redact


# True when main() is this process's entry point (console script, python -m pipeline), not a call from a test
_OWN_PROCESS = False


@contextlib.contextmanager
def stage_imports(uri: str | None = None, *, tracked: bool = True, draws: bool = False) -> Iterator[None]:
    """Load a stage: its modules, and mlflow if it tracks (with its database store where the tracking URI in force,
    ``uri`` or the default, is a database); in a process of its own with the garbage collector paused, what was loaded
    then frozen. A stage that ``draws`` starts the drawing helper first: matplotlib loads there meanwhile.

    Importing torch and mlflow creates millions of long-lived objects, which the collector scans again and again
    while they load (a third of the import time); frozen, they are never scanned again, in the run or at exit.
    Process-wide, so only where ``main`` owns the process. benchmarks/bench_train.py ("frozen GC"): `pipeline
    train` without it took 7.9 s longer (1.44x, median of 3) on the shared 2-core test machine.
    """
    if draws and _OWN_PROCESS:
        from pipeline.tracking import drawing

        drawing.start()
    paused = _OWN_PROCESS and gc.isenabled()
    if paused:
        gc.disable()
    try:
        if tracked:  # mlflow, 0.12 s of its 0.5-0.65 s saved by the paused collector (measured after torch)
            from pipeline.tracking.runs import load_libraries

            load_libraries(uri)
        yield
    finally:
        if paused:
            gc.freeze()
            gc.enable()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="show the traceback of an error (also PIPELINE_DEBUG=1; "
                                            "accepted anywhere on the command line)")
def cli(debug: bool) -> None:
    """Study how small ConvNets learn: stages tracked in MLflow, sweeps searched with Optuna.

    Exit status: 0 done, 2 bad input, 1 the environment failed (a store that does not answer
    or is read-only), 128+N stopped by signal N. Errors are one line on stderr.
    """


@cli.command("prepare-data")
@config_options(PrepareDataConfig)
def prepare_data_cmd(config: PrepareDataConfig) -> None:
    """Build a data set and log it: data/data.pt (for train --data-uri), a dataset input,
    class counts and a picture of X beside y."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.data import prepare as prepare_data

    result = prepare_data.run(config)
    click.echo(f"data at {result.data_uri}")
    click.echo(results_line(result.run_id))


@cli.command("train")
@config_options(TrainConfig)
def train_cmd(config: TrainConfig) -> None:
    """Train one model. Reads --data-uri (prepare-data's runs:/<id>/data) or builds the recipe's
    data; writes params, per-epoch train/val loss and accuracy, filter images per epoch,
    figures, and the model, named after what it is: runs:/<id>/detector1d-F4-k5."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.train import stage as train

    result = train.run(config)
    click.echo(f"model at {result.model_uri}; final {train.summary_line(result)}")
    click.echo(results_line(result.run_id))


@cli.command("evaluate")
@config_options(EvaluateConfig)
def evaluate_cmd(config: EvaluateConfig) -> None:
    """Evaluate a logged model (--run-id of its train run) on fresh data: test loss and accuracy,
    confusion counts, a prediction heatmap and the 0,+1,0 detector filter."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.evaluate import stage as evaluate

    result = evaluate.run(config)
    click.echo(f"test_accuracy {result.test_accuracy:.4f}")
    click.echo(results_line(result.run_id))


@cli.command("capacity")
@config_options(CapacityConfig)
def capacity_cmd(config: CapacityConfig) -> None:
    """P(success) of the synthetic detector over a grid of filter counts x kernel sizes, many seeds
    each. Reads nothing; writes a parent run with figures (heatmap, P(success) against F, final-loss
    histogram) and tables (tables/seeds.csv, summary.csv, lottery_fit.csv), one child run per (F, k)
    with its P(success) and Wilson interval, and with --table the per-seed table as a local CSV.
    With --dataset digits|mnist|... (or an image --recipe): the test accuracy of a 2D net over the
    grid, all seeds of a cell trained at once; reads the data as `train` does; writes
    capacity_table.csv, tables/summary.csv (mean, std, 95% interval, min, max, bad runs per cell),
    the curves and four figures, and a child run per (F, k)."""
    with stage_imports(config.tracking_uri, tracked=False, draws=True):
        from pipeline.capacity import stage as capacity

    def load_tracking() -> None:  # mlflow, once the 1D grid trains: the two overlap (0.5 s of its 5 s on 2 cores);
        with stage_imports(config.tracking_uri):  # the freeze after it also freezes the trainer's objects
            pass

    result = capacity.run(config, echo=click.echo, load_tracking=load_tracking)
    click.echo(results_line(result.run_id))


@cli.command("capacity-pattern")
@config_options(PatternCapacityConfig)
def capacity_pattern_cmd(config: PatternCapacityConfig) -> None:
    """The capacity study on a published task (rom1mouret/exploration: [1, 1, x, 1] in noise), conv
    trained and frozen, many seeds per F. Reads nothing; writes a capacity run tagged task=pattern1101
    with figures (mean test accuracy against F beside the published curve, P(accuracy >= success),
    the accuracy histogram), tables/seeds.csv and summary.csv, and one child run per (F, variant)."""
    with stage_imports(config.tracking_uri):
        from pipeline.capacity import replication

    result = replication.run(config, echo=click.echo)
    click.echo(results_line(result.run_id))


@cli.command("diagnose")
@config_options(DiagnoseConfig)
def diagnose_cmd(config: DiagnoseConfig) -> None:
    """Is a stalled seed really at a local minimum? Reads a capacity run of the lab's detector
    (--capacity-run runs:/<id>: its config.json and tables/seeds.csv) and replays its seeds. Writes a
    diagnose run with diagnosis.csv (per seed: gradient norm, Hessian eigenvalues, line searches, the
    long run, a verdict, filter classes), tables/ and figures/ (verdict shares, eigenvalues, filter
    classes, ticket curve, loss paths and slices), and with --table the per-seed table as a local CSV."""
    with stage_imports(config.tracking_uri):
        from pipeline.diagnose import stage as diagnose

    result = diagnose.run(config, echo=click.echo)
    click.echo(results_line(result.run_id))


@cli.command("inspect")
@config_options(InspectConfig)
def inspect_cmd(config: InspectConfig) -> None:
    """Look inside a logged model (--run-id of its train run): activation maximisation per first-layer filter
    and per output, saliency of the easiest/hardest test examples, Sobel edge scores of the
    filters; for the 1D detector its 0,+1,0 filter, kernel and activations. Logged under inspect/."""
    with stage_imports(config.tracking_uri):
        from pipeline.evaluate import inspect as inspection

    result = inspection.run(config)
    click.echo(results_line(result.run_id))


@cli.command("main")
@config_options(MainConfig)
def main_cmd(config: MainConfig) -> None:
    """The whole offline study: prepare-data, train with 3 and 4 filters, evaluate both, a quick
    capacity grid and an Optuna sweep, as nested runs under one parent that tells the result."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.study import main as main_stage

    result = main_stage.run(config)
    click.echo(results_line(result.run_id))


@cli.command("reproduce")
@click.argument("run_id")
@config_options(ReproduceConfig)
def reproduce_cmd(config: ReproduceConfig, run_id: str) -> None:
    """A finished run again (tagged reproduces=<id>), every metric and weight compared: exit 0 equal, 1 not."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.study import reproduce
    result = reproduce.run(config, run_id, echo=click.echo)  # the rerun's lines, as the stage prints them
    click.echo(result.line())  # the verdict, last
    if not result.equal:
        raise click.exceptions.Exit(1)


@cli.command("sweep")
@config_options(SweepConfig)
def sweep_cmd(config: SweepConfig) -> None:
    """Optuna study over filter counts and kernel sizes (and optionally lr). Reads/extends the
    study --study-name in --storage (several workers may share it); writes a parent run with
    the best trial(s), trials.csv and Optuna's plots, and one child run per trial."""
    with stage_imports(config.tracking_uri, draws=True):
        from pipeline.sweep import stage as sweep

    result = sweep.run(config)
    click.echo(results_line(result.run_id))


@cli.command("study-summary")
@config_options(StudySummaryConfig)
def study_summary_cmd(config: StudySummaryConfig) -> None:
    """Print a study's trial counts by state and its best trials."""
    with stage_imports(tracked=False):
        from pipeline.sweep import report as sweep_report

    click.echo(sweep_report.summary(config.study_name, config.storage, config.top))


@cli.command("serve")
@config_options(ServeConfig)
def serve_cmd(config: ServeConfig) -> None:
    """Serve a logged model over HTTP (mlflow models serve, in this environment). POST a batch to
    /invocations, e.g. {"inputs": [[[0, 0, 1, 0, ...]]]} for the 1D detector; it answers with
    probability_<i> per class, predicted_class and predicted_label per input."""
    from pipeline.tracking import serving

    serving.serve(config, echo=lambda line: click.echo(line, err=True))


@cli.command("recipes")
def recipes_cmd() -> None:
    """List the recipes (presets from the course labs) and their settings."""
    for r in RECIPES.values():
        click.echo(f"{r.name}: {r.description}")
        for k, v in r.values.items():
            click.echo(f"    {k} = {','.join(map(str, v)) if isinstance(v, tuple) else v}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr, never a traceback.

    Exit 2: bad input. Exit 1: the environment failed (a store that does not answer or is read-only, a full
    disk). Exit 128 + N: signal N (SIGINT, SIGTERM, SIGHUP end the runs KILLED). ``--debug`` anywhere on the
    line, or ``PIPELINE_DEBUG=1``, adds the traceback.
    """
    global _OWN_PROCESS
    _OWN_PROCESS = argv is None
    if _OWN_PROCESS:
        atexit.register(gc.freeze)  # registered first, so run last: the exit then skips scanning for cycles
        if not_done := keep_freed_memory():  # freed buffers kept for the next step (pipeline.train.memory)
            click.echo(f"Note: {not_done}", err=True)
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end] or debugging()
    args = [a for i, a in enumerate(args) if not (i < end and a == "--debug")]
    if debug:  # the stages read it too (library logs: tracking/runs.py quiet_library_logs)
        os.environ["PIPELINE_DEBUG"] = "1"
    code = 0
    # a background thread's failure (Optuna's heartbeat, the store watch): one line too, for this call only
    old_hook = threading.excepthook
    threading.excepthook = lambda hook_args: report_thread_error(hook_args, debug)
    try:
        with interrupt_signals():
            try:
                with cli.make_context("pipeline", args) as ctx:
                    cli.invoke(ctx)
            except click.exceptions.Exit as err:
                code = err.exit_code
            except click.exceptions.NoArgsIsHelpError as err:
                err.show()
                code = 2
            except click.ClickException as err:
                click.echo(redact(f"Error: {err.format_message()}"), err=True)
                code = err.exit_code
            except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - every failure becomes one line
                code = report(err, debug)
    except KeyboardInterrupt as err:  # a signal that came after the command's own handling
        code = report(err, debug)
    finally:
        threading.excepthook = old_hook
    if code:
        sys.exit(code)
