"""One line, never a traceback: careless and hostile input to every stage, and broken stores.

Exit 2 for bad input (validated before any training), 1 for an environment fault (a store that
does not answer or is read-only). Every case also leaves the runs and the study written
before it unchanged and no run RUNNING (``errorpath.check``). The default suite runs the table
in-process; the slow test runs the same table as real processes.
"""
from __future__ import annotations

import pytest

from errorpath import case, run_case, run_in_process, run_table_as_processes

FAST_SWEEP = ("--seeds", "4", "--epochs", "20", "--progress", "false", "--n-trials", "1")
RO = "?mode=ro&uri=true"  # SQLite's read-only mode: a read-only store even for root

CASES = [
    # sizes that cannot be allocated, ranges, non-finite numbers
    case("synthetic-data-too-big", "train", "--n", "1000000000000", needle="--n 1000000000000"),
    case("model-too-big", "train", "--filters", "10000000", "--epochs", "1", needle="fewer --filters"),
    case("image-model-too-big", "train", "--dataset", "digits", "--filters", "100000,16", "--epochs", "1",
         needle="fewer --filters"),
    case("capacity-too-big", "capacity", "--seeds", "1000000000", needle="fewer --seeds"),
    case("sweep-too-big", "sweep", "--storage", "memory", "--seeds", "1000000000", needle="fewer --seeds"),
    case("accuracy-sweep-too-big", "sweep", "--storage", "memory", "--objective", "accuracy", "--dataset", "digits",
         "--filters", "4,10000000", needle="fewer --filters"),
    case("test-set-too-big", "evaluate", "--run-id", "{train_run}", "--n", "100000000000", needle="--n"),
    case("seed-beyond-2^64", "train", "--seed", str(2**64), needle="--seed"),
    case("data-seed-negative", "train", "--data-seed", "-1", needle="--data-seed"),
    case("val-seed-beyond-2^32", "prepare-data", "--val-seed", str(2**32), needle="--val-seed"),
    case("first-seed-overflow", "capacity", "--first-seed", str(2**64 - 1), "--seeds", "2", needle="--first-seed"),
    case("sampler-seed-beyond-2^32", "sweep", "--sampler-seed", str(2**40), needle="--sampler-seed"),
    case("synthetic-option-on-images", "train", "--dataset", "digits", "--n", "3",
         needle="--n: options of the synthetic 1D data, but the data is digits"),  # it would be ignored
    case("image-option-on-synthetic", "prepare-data", "--split-seed", "3", "--download",
         needle="--split-seed, --download: options of image data, but the data is the synthetic 1D set"),
    case("synthetic-option-on-an-image-sweep", "sweep", "--storage", "memory", "--objective", "accuracy",
         "--dataset", "digits", "--n", "3", needle="--n: options of the synthetic 1D data, but the data is digits"),
    case("epochs-beyond-int64", "train", "--epochs", "1e30", needle="--epochs"),
    case("threads-absurd", "train", "--threads", "100000", needle="--threads"),
    case("heartbeat-absurd", "sweep", "--heartbeat-interval", "1000000000000", needle="--heartbeat-interval"),
    case("lr-nan", "train", "--lr", "nan", needle="--lr"),
    case("momentum-inf", "capacity", "--momentum", "inf", needle="--momentum"),
    case("timeout-inf", "sweep", "--timeout", "inf", needle="--timeout"),
    case("radius-inf", "inspect", "--run-id", "{train_run}", "--radius", "inf", needle="--radius"),
    case("examples-absurd", "evaluate", "--run-id", "{train_run}", "--examples", "100000", needle="--examples"),
    # paths
    case("table-in-missing-folder", "capacity", "--table", "{root}/missing/seeds.csv", needle="--table"),
    case("table-is-a-folder", "capacity", "--table", "{root}", needle="folder"),
    case("journal-in-missing-folder", "sweep", "--storage", "{root}/missing/s.journal", *FAST_SWEEP,
         needle="does not exist"),
    case("storage-empty-sqlite-path", "sweep", "--storage", "sqlite:///", *FAST_SWEEP, needle="file name"),
    case("tracking-empty-sqlite-path", "train", "--tracking-uri", "sqlite:///", needle="file name"),
    case("tracking-uri-is-a-folder", "train", "--tracking-uri", "sqlite:///{root}", needle="folder"),
    case("data-dir-missing", "train", "--dataset", "mnist", "--data-dir", "{root}/nothing", needle="missing"),
    case("npz-not-an-npz", "prepare-data", "--dataset", "npz", "--data-dir", "{root}/not-npz.npz", needle="npz"),
    case("summary-of-a-missing-journal", "study-summary", "--storage", "{root}/none.journal", needle="journal"),
    # stores: malformed, unknown, other tool's, read-only, unreachable
    case("tracking-bad-port", "train", "--tracking-uri", "postgresql://u:pw@localhost:notaport/db",
         needle="not a database URL"),
    case("storage-bad-port", "sweep", "--storage", "postgresql://u:pw@localhost:notaport/db", needle="--storage"),
    case("storage-unencoded-at", "sweep", "--storage", "postgresql://u:p@ss@127.0.0.1:1/db", needle="%40"),
    case("storage-unknown-scheme", "sweep", "--storage", "redis://h/0", needle="--storage"),
    case("storage-holds-mlflow", "sweep", "--storage", "{uri}", "--tracking-uri", "sqlite:///{root}/other.db",
         needle="MLflow's tables"),
    case("tracking-holds-optuna", "train", "--tracking-uri", "{storage}", needle="Optuna's tables"),
    case("summary-on-mlflow-db", "study-summary", "--storage", "{uri}", needle="MLflow's tables"),
    case("storage-read-only", "sweep", "--storage", "sqlite:///file:{root}/optuna.db" + RO, "--study-name", "known",
         *FAST_SWEEP, code=1, needle="cannot be written"),
    case("tracking-read-only", "train", "--tracking-uri", "sqlite:///file:{root}/mlflow.db" + RO, code=1,
         needle="cannot be written"),
    case("tracking-server-refuses", "train", "--tracking-uri", "http://127.0.0.1:9", code=1, needle="no answer"),
    case("storage-server-refuses", "sweep", "--storage", "postgresql://u@127.0.0.1:9/db", *FAST_SWEEP, code=1,
         needle="Optuna storage"),
    # models and data that do not fit each other
    case("detector-on-digits", "evaluate", "--run-id", "{train_run}", "--dataset", "digits", needle="1D detector"),
    case("inspect-detector-on-digits", "inspect", "--run-id", "{train_run}", "--dataset", "digits",
         needle="1D detector"),
    case("lenet-on-sequences", "train", "--model", "lenet", "--filters", "6,16", "--kernel-size", "5,5",
         needle="images"),
    case("detector-on-images", "train", "--dataset", "digits", "--model", "detector1d", "--filters", "3",
         "--kernel-size", "5", "--loss", "ce", needle="1D inputs"),
    case("evaluate-a-run-without-model", "evaluate", "--run-id", "{prepare_run}", needle="cannot load model"),
    case("data-uri-is-a-model", "train", "--data-uri", "runs:/{train_run}/model", needle="--data-uri"),
    case("data-uri-is-not-prepared-data", "train", "--data-uri", "{root}/not-npz.npz", needle="not a prepared data"),
    case("success-objective-on-images", "sweep", "--dataset", "digits", needle="synthetic"),
    # the stages that came later: capacity on images, the published pattern task, diagnose, serve
    case("image-capacity-too-big", "capacity", "--dataset", "digits", "--seeds", "100000000", "--filters", "2",
         "--kernel-sizes", "3", needle="fewer --seeds"),
    case("image-capacity-table-in-missing-folder", "capacity", "--dataset", "digits", "--table",
         "{root}/missing/t.csv", needle="--table"),
    case("pattern-too-big", "capacity-pattern", "--seeds", "1000000000", "--test-seed", "2000000000",
         needle="fewer --seeds"),
    case("pattern-first-seed-negative", "capacity-pattern", "--first-seed", "-3", needle="--first-seed"),
    case("pattern-lr-inf", "capacity-pattern", "--lr", "inf", needle="--lr"),
    case("pattern-table-in-missing-folder", "capacity-pattern", "--table", "{root}/missing/t.csv", needle="--table"),
    case("diagnose-a-missing-run", "diagnose", "--capacity-run", "0123456789abcdef0123456789abcdef",
         needle="no such run"),
    case("diagnose-a-train-run", "diagnose", "--capacity-run", "{train_run}", needle="--capacity-run"),
    case("diagnose-threads-absurd", "diagnose", "--capacity-run", "{train_run}", "--threads", "5000",
         needle="--threads"),
    case("serve-a-missing-model", "serve", "--model-uri", "runs:/0123456789abcdef/model", needle="no model there"),
    case("serve-port-zero", "serve", "--run-id", "{train_run}", "--port", "0", needle="--port"),
    # MLflow's own settings
    case("deleted-experiment", "train", "--experiment-name", "gone", needle="deleted"),
    case("experiment-id-missing", "train", env={"MLFLOW_EXPERIMENT_ID": "987654"}, needle="MLFLOW_EXPERIMENT_ID"),
    case("unknown-command", "trian", needle="No such command"),
    case("unknown-option", "train", "--filtres", "3", needle="--filtres"),
]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_one_line_in_process(c, error_world):
    run_case(c, error_world)


def test_debug_shows_the_traceback(error_world):
    world, _ = error_world
    for args, env in ((["--debug", "train", "--seed", "-5"], {}), (["train", "--seed", "-5", "--debug"], {}),
                      (["train", "--seed", "-5"], {"PIPELINE_DEBUG": "1"})):
        code, _, err = run_in_process(args, {"MLFLOW_TRACKING_URI": world.uri, **env}, world.root)
        assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error: --seed")


@pytest.mark.slow
def test_one_line_as_real_processes(error_world):
    run_table_as_processes(CASES, error_world)
