"""`main`, the whole study, as the MLflow UI shows it: one experiment that opens on its runs,
runs named and described so that a person can tell them apart, params that define a run, a
filter image large enough to read, and the parent run as the study's front page.

One fast `pipeline main` (60 epochs, a 3-seed capacity grid, a 4-trial sweep) is checked
through MlflowClient; `make run` on a fresh clone leaves the same shape at full size.
"""
from __future__ import annotations

import dataclasses

import pytest

from pipeline.study import main
from pipeline.config.stages import MainConfig
from pipeline.tracking import compat
from pipeline.tracking.experiments import DEFAULT_EXPERIMENT, KIND, KIND_TAG, NOTE_TAG

FAST = MainConfig(epochs=60, sweep_trials=4, sweep_seeds=8, capacity_seeds=3)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(client, main's result, every run in the store), after one fast `pipeline main`."""
    import mlflow

    work = tmp_path_factory.mktemp("main")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        compat.forget_active_experiment()
        mlflow.set_tracking_uri(uri)
        result = main.run(FAST, echo=lambda s: None)
        client = mlflow.MlflowClient(uri)
        experiments = client.search_experiments()
        runs = client.search_runs([e.experiment_id for e in experiments], max_results=5000)
        yield client, result, runs


def test_one_experiment_with_runs_that_opens_on_the_runs_table(study):
    client, result, runs = study
    with_runs = {r.info.experiment_id for r in runs}
    assert len(with_runs) == 1
    experiment = client.get_experiment(with_runs.pop())
    assert experiment.name == DEFAULT_EXPERIMENT
    assert experiment.tags[KIND_TAG] == KIND and "main" in experiment.tags[NOTE_TAG]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_run_names_are_unique_short_and_say_what_differs(study):
    _, result, runs = study
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)) and max(map(len, names)) <= 30
    assert {"main F3 vs F4 s0", "prepare-data synthetic", "train F3 k5 s0", "train F4 k5 s0", "evaluate F3 k5 s0",
            "evaluate F4 k5 s0", "capacity F1–8 × k3,5,7", "capacity F4 k5", "sweep main-60ep-8seeds"} <= set(names)
    assert sorted(n.split(" F")[0] for n in names if n.startswith("trial ")) == [f"trial {i}" for i in range(4)]
    for r in runs:  # the same facts as tags, to group and filter the runs table by
        if r.data.tags["stage"] in ("train", "evaluate", "sweep-trial"):
            assert {"filters", "kernel_size", "seed", "stage"} <= set(r.data.tags), r.info.run_name


def test_params_are_only_what_defines_a_run(study):
    _, _, runs = study
    for r in runs:
        params = r.data.params
        assert all(v.strip() not in ("", "''", "None") for v in params.values()), (r.info.run_name, params)
        assert not {"tracking_uri", "experiment_name", "storage", "threads", "device"} & set(params)
        assert not any("://" in v for v in params.values()), (r.info.run_name, params)
    train = [r for r in runs if r.data.tags["stage"] == "train"]
    assert train and all(len(r.data.params) <= 20 for r in train)


def test_every_stage_run_is_described_in_two_parts_and_keeps_its_config(study):
    client, _, runs = study
    for r in runs:
        note = r.data.tags.get(NOTE_TAG, "")
        assert note.count("\n\n") >= 1 and len(note) > 60, (r.info.run_name, note)
    train = next(r for r in runs if r.info.run_name == "train F4 k5 s0")
    config = client.download_artifacts(train.info.run_id, "config.json")
    assert '"threads"' in open(config).read()  # settings that are not params are still on record


def test_the_filter_image_is_large_and_has_a_step_slider(study):
    from PIL import Image

    client, _, runs = study
    train = next(r for r in runs if r.info.run_name == "train F4 k5 s0")
    pngs = sorted(a.path for a in client.list_artifacts(train.info.run_id, "images") if a.path.endswith(".png"))
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in pngs)
    assert pngs[0].startswith("images/filters+step+") and steps[0] == 0 and steps[-1] == FAST.epochs
    for path in (pngs[0], client.download_artifacts(train.info.run_id, "figures/filters_final.png")):
        local = path if path.startswith("/") else client.download_artifacts(train.info.run_id, path)
        width, height = Image.open(local).size
        assert width >= 600 and height >= 200


def test_main_is_the_front_page(study):
    client, result, runs = study
    parent = client.get_run(result.run_id)
    note = parent.data.tags[NOTE_TAG]
    assert "3 filters" in note and "4 filters" in note and "P(success)" in note and "Optuna sweep" in note
    assert "local minimum" not in note  # main runs no diagnosis: a seed is what the definition says
    for f, trained in result.train.items():  # success: loss < 0.05 and every training example right
        ok = trained.final["train_loss"] < 0.05 and trained.final["train_accuracy"] == 1.0
        said = note.split(f"with {f} filters the training loss ended at ")[1].split(")")[0]
        assert said.split("(")[1].startswith("succeeded" if ok else "failed"), said
        assert f"{result.evaluate[f].unseen_accuracy:.3f} on the sequences it never trained on" in said
    metrics = parent.data.metrics
    assert metrics["unseen_accuracy_F3"] == pytest.approx(result.evaluate[3].unseen_accuracy)
    assert {"train_loss_F3", "train_loss_F4", "test_accuracy_F4", "p_success_F4_k5", "best_value"} <= set(metrics)
    assert metrics["best_value"] == result.sweep.best[0]["values"][0]
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert {"figures/learning_curves.png", "figures/p_success_vs_filters.png", "figures/sweep_history.png",
            "figures/sweep_contour.png"} <= figures
    children = sorted(r.data.tags["stage"] for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id)
    assert children == ["capacity", "evaluate", "evaluate", "prepare-data", "sweep", "train", "train"]


def test_main_again_reuses_every_stage_and_rerun_runs_them_again(tmp_path, monkeypatch):
    """A second `main` on the same store and commit trains nothing; its front page links what it reused."""
    import mlflow

    from pipeline.tracking import identity

    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(identity, "code_version", lambda: ("a" * 40, False))  # a clean tree at one commit
    compat.forget_active_experiment()
    mlflow.set_tracking_uri(uri)
    small = MainConfig(epochs=5, sweep_trials=3, sweep_seeds=4, capacity_seeds=2)
    client = mlflow.MlflowClient(uri)

    def counts() -> dict[str, int]:
        found = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
        out: dict[str, int] = {}
        for r in found:
            out[r.data.tags["stage"]] = out.get(r.data.tags["stage"], 0) + 1
        return out

    first = main.run(small, echo=lambda s: None)
    after_first = counts()
    second = main.run(small, echo=lambda s: None)
    after_second = counts()
    assert after_first["train"] == 2 and after_first["main"] == 1 and after_first["sweep-trial"] == 3
    assert {k: v - after_first[k] for k, v in after_second.items() if v != after_first[k]} == {"main": 1}  # a parent
    assert (second.sweep.run_id, second.sweep.best) == (first.sweep.run_id, first.sweep.best)  # its study is whole
    assert second.train[3].run_id == first.train[3].run_id
    assert second.train[3].final == pytest.approx(first.train[3].final)
    assert second.evaluate[4].test_accuracy == first.evaluate[4].test_accuracy
    parent = client.get_run(second.run_id)
    assert parent.data.tags["reused.train F3"] == first.train[3].run_id
    assert "**Reused**" in parent.data.tags[NOTE_TAG] and first.capacity.run_id in parent.data.tags[NOTE_TAG]
    assert parent.data.metrics["test_accuracy_F4"] == first.evaluate[4].test_accuracy
    monkeypatch.setattr(main, "finished_trials", lambda cfg: 2)  # a study short of a trial (a stopped sweep)
    resumed = main.run(small, echo=lambda s: None)
    assert resumed.sweep.run_id != first.sweep.run_id and counts()["sweep-trial"] == 4  # the trial it lacked
    assert counts()["train"] == 2  # and nothing else did
    main.run(dataclasses.replace(small, rerun=True), echo=lambda s: None)
    assert counts()["train"] == 4 and counts()["capacity"] == after_first["capacity"] * 2
