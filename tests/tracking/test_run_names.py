"""Run names are unique in their experiment (DESIGN: "short, unique and say what differs"): ``capacity F4 k5``,
then ``capacity F4 k5 (2)``. A study's children guess their parent's number, so that a grid in a long-used
experiment names each child with one query that reads no run, not one that reads every earlier grid's."""
from __future__ import annotations

import pytest

from errorpath import run_in_process


class CountingClient:
    """An MlflowClient that counts its searches and the runs they read."""

    def __init__(self, uri: str):
        import mlflow

        self.client, self.searches, self.read = mlflow.MlflowClient(uri), 0, 0

    def search_runs(self, *args, **kwargs):
        found = self.client.search_runs(*args, **kwargs)
        self.searches, self.read = self.searches + 1, self.read + len(found)
        return found


def _make(uri: str, experiment_id: str, *names: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    for name in names:
        client.set_terminated(client.create_run(experiment_id, run_name=name).info.run_id)


@pytest.mark.parametrize("guess,taken,expected,searches,read", [
    (None, [], "capacity F4 k5", 1, 0),
    (None, ["capacity F4 k5", "capacity F4 k5 (2)", "capacity F4 k50"], "capacity F4 k5 (3)", 1, 3),
    (3, ["capacity F4 k5", "capacity F4 k5 (2)"], "capacity F4 k5 (3)", 1, 0),  # the guess is free: nothing read
    (2, ["capacity F4 k5", "capacity F4 k5 (2)"], "capacity F4 k5 (3)", 2, 3),  # taken: the lowest free number
    (1, ["capacity F4 k5 (2)"], "capacity F4 k5", 1, 0),
])
def test_a_name_is_unique_in_its_experiment(tracking_uri, guess, taken, expected, searches, read):
    from pipeline.tracking.experiments import unique_run_name

    client = CountingClient(tracking_uri)
    experiment = client.client.create_experiment("names")
    _make(tracking_uri, experiment, *taken)
    assert unique_run_name("capacity F4 k5", experiment, client, guess=guess) == expected
    assert (client.searches, client.read) == (searches, read)


@pytest.mark.parametrize("name,guessed", [("it's F4", 2), ("back\\slash F4", 2), ("under_score F4", 3), ("100% F4", 3)])
def test_names_with_quotes_and_wildcards_are_numbered_too(tracking_uri, name, guessed):
    """LIKE's wildcards match themselves; a quote or a backslash cannot be in the exact filter, so the guess is
    not tried there and the lowest free number is taken."""
    from pipeline.tracking.experiments import unique_run_name

    client = CountingClient(tracking_uri)
    experiment = client.client.create_experiment("names")
    _make(tracking_uri, experiment, name, name.replace("F4", "F5"))
    assert unique_run_name(name, experiment, client, guess=1) == f"{name} (2)"
    assert unique_run_name(name, experiment, client, guess=3) == f"{name} ({guessed})"


def test_a_second_grid_numbers_its_parent_and_children_alike(tracking_uri, tmp_path):
    import mlflow

    args = ["capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3", "--epochs", "5"]
    for _ in range(2):
        code, _, err = run_in_process(args, {"MLFLOW_TRACKING_URI": tracking_uri}, tmp_path)
        assert code == 0, err
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    names = {r.info.run_id: r.info.run_name for r in runs}
    under = {}
    for r in runs:
        parent = r.data.tags.get("mlflow.parentRunId")
        if parent:
            under.setdefault(names[parent], []).append(r.info.run_name)
    assert {p: sorted(c) for p, c in under.items()} == {
        "capacity F1,2 × k3": ["capacity F1 k3", "capacity F2 k3"],
        "capacity F1,2 × k3 (2)": ["capacity F1 k3 (2)", "capacity F2 k3 (2)"]}
