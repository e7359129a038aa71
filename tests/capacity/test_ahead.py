"""The 1D grid trained ahead of its logging (``capacity/ahead.py``): order, failures, stopping."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.capacity.ahead import GridAhead

GRID = [(1, 3), (2, 3), (1, 5), (2, 5)]


def test_every_cell_comes_once_in_grid_order_after_the_warm_up():
    calls = []
    with GridAhead(GRID, lambda f, k: calls.append((f, k)) or f * 10 + k, lambda: calls.append("warm")) as ahead:
        items = [item for batch in ahead.batches() for item in batch]
    assert calls == ["warm", *GRID]
    assert [(f, k, r) for f, k, r, _ in items] == [(f, k, f * 10 + k) for f, k in GRID]
    assert all(seconds >= 0 for *_, seconds in items)


def test_what_was_ready_comes_as_one_batch():
    release = threading.Event()

    def train(f, k):
        if (f, k) == GRID[-1]:
            release.wait(5)
        return f

    with GridAhead(GRID, train) as ahead:
        batches = ahead.batches()
        time.sleep(0.3)  # the first three are trained meanwhile
        first = next(batches)
        release.set()
        rest = list(batches)
    assert [len(first), *map(len, rest)] == [3, 1]


def test_a_failure_of_the_training_is_raised_where_the_cells_are_read_after_those_before_it():
    def train(f, k):
        if (f, k) == GRID[2]:
            raise RuntimeError("no memory for this cell")
        return f

    seen = []
    with pytest.raises(RuntimeError, match="no memory for this cell"), GridAhead(GRID, train) as ahead:
        for batch in ahead.batches():
            seen += [(f, k) for f, k, _, _ in batch]
    assert seen == GRID[:2]


def test_leaving_the_block_stops_the_training_after_its_cell_in_progress():
    trained, started = [], threading.Event()

    def train(f, k):
        started.set()
        time.sleep(0.2)
        trained.append((f, k))

    with GridAhead(GRID * 5, train):
        started.wait(5)
    assert trained == GRID[:1]  # waited for: the cell in progress ended before the block was left
    time.sleep(0.6)
    assert trained == GRID[:1]  # and no other began


def test_a_configuration_that_fails_in_the_training_thread_fails_the_stage_in_one_line(error_world, monkeypatch):
    """The stage: the error of the training thread ends the parent FAILED, in one line, after the children of the
    configurations trained before it."""
    import mlflow

    from errorpath import error_lines, run_in_process
    from pipeline.capacity import stage

    real, calls = stage.seed_table, []

    def failing(f, k, *args, **kwargs):
        calls.append(f)
        if f == 2:
            raise MemoryError("cannot allocate the configuration's windows")
        return real(f, k, *args, **kwargs)

    monkeypatch.setattr(stage, "seed_table", failing)
    world, _ = error_world
    code, _, err = run_in_process(["capacity", "--filters", "1,2,3", "--kernel-sizes", "3", "--seeds", "3", "--epochs",
                                   "10", "--experiment-name", "ahead-fails"], {"MLFLOW_TRACKING_URI": world.uri},
                                  world.root)
    assert code != 0 and "Traceback" not in err and len(error_lines(err)) == 1, err[-2000:]
    assert "out of memory" in error_lines(err)[0]  # the CLI's line for a MemoryError, raised in the stage's thread
    client = mlflow.MlflowClient(world.uri)
    runs = client.search_runs([client.get_experiment_by_name("ahead-fails").experiment_id])
    parent = [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [(r.data.tags["filters"], r.info.status) for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent == ["FAILED"] and children == [("1", "FINISHED")] and calls == [1, 2]
