"""Finished runs are immutable: a stage asked to continue a run that is not RUNNING refuses.

``MLFLOW_RUN_ID`` (what ``mlflow run`` sets) of a FINISHED, FAILED, KILLED, deleted or missing
run ends in one line (exit 2) before anything is written; the run keeps its params, metrics,
tags, artifacts, status and end time. A RUNNING run is adopted and ended by the stage.
"""
from __future__ import annotations

import pytest

from errorpath import case, run_case, run_in_process, run_table_as_processes

STAGES = {
    "train": ("train", "--epochs", "3"),
    "prepare-data": ("prepare-data",),
    "evaluate": ("evaluate", "--run-id", "{train_run}"),
    "inspect": ("inspect", "--run-id", "{train_run}", "--steps", "2"),
    "capacity": ("capacity", "--filters", "1", "--kernel-sizes", "3", "--seeds", "2", "--epochs", "2"),
    "sweep": ("sweep", "--storage", "memory", "--seeds", "2", "--epochs", "2", "--n-trials", "1", "--progress", "false"),
    "main": ("main", "--epochs", "2", "--sweep-trials", "0"),
    "image-capacity": ("capacity", "--dataset", "digits", "--filters", "2", "--kernel-sizes", "3", "--seeds", "2",
                       "--epochs", "1"),
    "capacity-pattern": ("capacity-pattern", "--filters", "1", "--seeds", "2", "--steps", "5", "--test-pairs", "10"),
}
CASES = [case(f"{stage}-into-{state}-run", *args, env={"MLFLOW_RUN_ID": f"{{{state}_run}}"},
              needle=f"is a {label} run")
         for stage, args in STAGES.items()
         for state, label in (("train", "FINISHED"), ("failed", "FAILED"), ("killed", "KILLED"),
                              ("deleted", "deleted"))]
CASES += [case("train-into-a-missing-run", "train", env={"MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef"},
               needle="no such run")]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_a_run_that_is_not_running_is_never_changed(c, error_world):
    run_case(c, error_world)


@pytest.fixture
def running_run(error_world):
    """A RUNNING run, as `mlflow run` hands one to a stage (ended here if the stage did not)."""
    import mlflow

    world, _ = error_world
    client = mlflow.MlflowClient(world.uri)
    run_id = client.create_run("0", run_name="adopted").info.run_id
    yield client, run_id
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FAILED")


def test_a_running_run_is_adopted_and_ended(error_world, running_run):
    world, _ = error_world
    client, run_id = running_run
    code, out, err = run_in_process(["train", "--epochs", "3", "--image-every", "0"],
                                    {"MLFLOW_TRACKING_URI": world.uri, "MLFLOW_RUN_ID": run_id}, world.root)
    assert code == 0 and run_id in out, err
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and len(client.get_metric_history(run_id, "train_loss")) == 3


def test_a_password_given_through_mlflow_run_p_is_noted_in_one_line(error_world, running_run):
    world, _ = error_world
    # what `mlflow run -e sweep -P storage=postgresql://u:pw@...` leaves: the password in a param of the run
    secret = "pP-noted-secret"
    client, run_id = running_run
    client.log_param(run_id, "storage", f"postgresql://u:{secret}@db-host/optuna")
    code, out, err = run_in_process(
        ["sweep", "--storage", "memory", "--seeds", "2", "--epochs", "2", "--n-trials", "1", "--progress", "false"],
        {"MLFLOW_TRACKING_URI": world.uri, "MLFLOW_RUN_ID": run_id}, world.root)
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("Note:")]
    assert len(notes) == 1 and "storage" in notes[0] and "PGPASSWORD" in notes[0]
    assert secret not in out + err
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_immutability_as_real_processes(error_world):
    run_table_as_processes(CASES, error_world)
