"""Studies know what they are: settings stored at creation, resumes with other settings refused,
and neither tool's database used for the other's tables.

The world's study ``known`` was made by ``sweep --seeds 4 --epochs 20 --filters 1,2,3
--kernel-sizes 3,5``. Resuming it with any other defining setting ends in one line that lists
the difference and suggests a new ``--study-name``, and leaves the study as it was.
"""
from __future__ import annotations

import hashlib

import pytest

from errorpath import case, run_case, run_in_process, run_table_as_processes

KNOWN = ("sweep", "--study-name", "known", "--storage", "{storage}", "--seeds", "4", "--epochs", "20",
         "--filters", "1,2,3", "--kernel-sizes", "3,5", "--n-trials", "1", "--progress", "false")


def resume(id: str, *changed: str, needle: str) -> object:
    """``known`` resumed with ``changed`` options (later options win in Click)."""
    return case(id, *KNOWN, *changed, needle=needle)


CASES = [
    resume("objective", "--objective", "accuracy", "--dataset", "digits", needle="objective: success -> accuracy"),
    resume("multi-objective", "--multi-objective", "true", needle="directions"),
    resume("search-space", "--filters", "1-4", needle="search_space.filters"),
    resume("kernel-sizes", "--kernel-sizes", "3", needle="search_space.kernel_size"),
    resume("lr-searched", "--lr-min", "0.01", "--lr-max", "0.1", needle="search_space.lr"),
    resume("seeds", "--seeds", "5", needle="seeds: 4 -> 5"),
    resume("tau", "--tau", "0.1", needle="tau: 0.05 -> 0.1"),
    resume("epochs", "--epochs", "30", needle="epochs: 20 -> 30"),
    resume("data", "--n", "50", needle="data.n: 75 -> 50"),
    case("storage-holds-mlflow", *KNOWN, "--storage", "{uri}", "--tracking-uri", "sqlite:///{root}/fresh.db",
         needle="holds MLflow's tables"),
    case("tracking-holds-optuna", *KNOWN, "--tracking-uri", "{storage}", "--storage", "sqlite:///{root}/fresh.db",
         needle="holds Optuna's tables"),
    case("one-database-for-both", *KNOWN, "--storage", "{uri}", needle="one database"),
    case("trials-in-another-tracking-store", *KNOWN, "--tracking-uri", "sqlite:///{root}/other-mlflow.db",
         needle="were logged to another MLflow store"),
]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_a_study_is_resumed_only_with_its_own_settings(c, error_world):
    world, _ = error_world
    files = {p: _digest(p) for p in (world.root / "mlflow.db", world.root / "optuna.db", world.root / "fresh.db")}
    result = run_case(c, error_world)
    assert "--study-name known-2" in result[2] or "tables" in result[2] or "one database" in result[2]
    if "tables" in c.needle or "another MLflow store" in c.needle:  # refused before anything was written
        assert {p: _digest(p) for p in files} == files
        assert not (world.root / "other-mlflow.db").exists()


def test_the_settings_are_study_user_attributes_with_readable_keys(error_world):
    import optuna

    from pipeline.sweep.settings import SETTINGS_KEYS

    world, _ = error_world
    attrs = optuna.load_study(study_name="known", storage=world.storage).user_attrs
    assert set(SETTINGS_KEYS) <= set(attrs)
    assert attrs["objective"] == "success" and attrs["directions"] == ["maximize"]
    assert attrs["value_names"] == ["p_success"] and attrs["model"] == "detector1d"
    assert attrs["search_space"] == {"filters": [1, 2, 3], "kernel_size": [3, 5]}
    assert attrs["seeds"] == 4 and attrs["tau"] == 0.05 and attrs["epochs"] == 20
    assert attrs["data"] == {"n": 75, "width": 20, "data_seed": 0, "test_seed": 2, "test_n": 1000}
    assert attrs["training"] == {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.001}


def test_the_same_settings_resume_and_a_new_name_starts_afresh(error_world, tmp_path):
    import optuna

    world, _ = error_world
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    args = ["sweep", "--study-name", "again", "--storage", storage, "--seeds", "3", "--epochs", "10",
            "--filters", "1,2", "--kernel-sizes", "3", "--n-trials", "1", "--progress", "false", "--worker-index", "0"]
    env = {"MLFLOW_TRACKING_URI": world.uri}
    for _ in range(2):
        assert run_in_process(args, env, world.root)[0] == 0
    assert len(optuna.load_study(study_name="again", storage=storage).trials) == 2
    code, _, err = run_in_process([*args, "--tau", "0.2"], env, world.root)
    assert code == 2 and "--study-name again-2" in err
    code, _, err = run_in_process([*args, "--tau", "0.2", "--study-name", "again-2"], env, world.root)
    assert code == 0, err
    assert optuna.load_study(study_name="again-2", storage=storage).user_attrs["tau"] == 0.2


def test_a_study_is_not_resumed_into_an_mlflow_store_without_its_runs(error_world, tmp_path, monkeypatch):
    """`make run` after the store was deleted but not optuna.db: one line, not a missing-run traceback
    after the trials (the best trial's tag pointed at a run of the old store)."""
    import mlflow

    world, _ = error_world
    monkeypatch.chdir(tmp_path)  # the new store's artifacts go under tmp_path/mlruns
    other = f"sqlite:///{tmp_path / 'other.db'}"
    client = mlflow.MlflowClient(other)
    client.search_experiments()  # an MLflow store of its own, without the study's runs
    args = [a.replace("{storage}", world.storage) for a in KNOWN]
    code, _, err = run_in_process([*args, "--tracking-uri", other], {}, world.root)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "were logged to another MLflow store" in err and "--study-name known-2" in err
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
    code, _, err = run_in_process([*args, "--tracking-uri", other, "--study-name", "known-2"], {}, world.root)
    assert code == 0, err


def test_accuracy_studies_record_their_training(tmp_path):
    from pipeline.config.studies import SweepConfig
    from pipeline.sweep.settings import SETTINGS_KEYS, differences, study_settings

    base = study_settings(SweepConfig(objective="accuracy", dataset="digits", epochs=3, filters=(2, 4)))
    assert set(base) == set(SETTINGS_KEYS)
    assert base["model"] == "lenet" and base["tau"] is None and base["training"]["batch_size"] == 32
    assert set(base["search_space"]) == {"filters_1", "kernel_size_1", "filters_2", "kernel_size_2"}
    other = study_settings(SweepConfig(objective="accuracy", dataset="digits", epochs=3, filters=(2, 4),
                                       batch_size=64, sampler="random", n_trials=99, worker_index=3))
    assert differences(base, other) == ["training.batch_size: 32 -> 64"]  # sampler, trials, worker: not defining


@pytest.mark.slow
def test_study_settings_as_real_processes(error_world):
    run_table_as_processes(CASES, error_world)


def test_main_refuses_a_study_it_cannot_resume_before_any_training(error_world, tmp_path):
    """`main` resumes its study by name; one made with other settings is refused before prepare-data."""
    import mlflow

    world, _ = error_world
    storage = f"sqlite:///{tmp_path / 'main.db'}"
    env = {"MLFLOW_TRACKING_URI": world.uri}
    other = ["sweep", "--study-name", "main-5ep-4seeds", "--storage", storage, "--seeds", "4", "--epochs", "5",
             "--filters", "1,2", "--kernel-sizes", "3", "--n-trials", "1", "--progress", "false"]
    assert run_in_process(other, env, world.root)[0] == 0
    client = mlflow.MlflowClient(world.uri)
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    code, out, err = run_in_process(["main", "--epochs", "5", "--sweep-seeds", "4", "--sweep-trials", "2",
                                     "--capacity-seeds", "0", "--storage", storage], env, world.root)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "other settings" in err and "search_space.filters" in err
    assert "== prepare-data" not in out
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before
