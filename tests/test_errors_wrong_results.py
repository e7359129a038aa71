"""Wrong results are never reported as success.

A non-finite learning rate or a loss that does not fit the model is refused before training;
a loss that turns NaN ends the run FAILED at that epoch; evaluate uses the data it is given;
the lottery fit says when the data cannot test it; study-summary never creates a storage; an
unknown tracking scheme is bad input (exit 2).
"""
from __future__ import annotations

import pytest

from errorpath import case, run_case, run_in_process, run_table_as_processes

CASES = [
    case("lr-inf", "train", "--lr", "inf", needle="--lr must be a finite number"),
    case("lr-diverges", "train", "--lr", "1e30", "--epochs", "30", "--experiment-name", "diverge",
         needle="at epoch 2"),
    case("loss-ce-on-the-detector", "train", "--loss", "ce", needle="single output"),
    case("loss-bce-on-images", "train", "--dataset", "digits", "--loss", "bce", needle="--loss bce"),
    case("loss-ce-on-prepared-sequences", "train", "--data-uri", "{data_uri}", "--loss", "ce", needle="single output"),
    case("unknown-tracking-scheme", "train", "--tracking-uri", "foo://bar", needle="unknown scheme"),
    case("summary-of-a-missing-storage", "study-summary", "--storage", "sqlite:///{root}/missing.db",
         needle="no such file"),
    case("summary-of-a-missing-study", "study-summary", "--storage", "{storage}", "--study-name", "nope",
         needle="no study 'nope'"),
    case("evaluate-the-given-data", "evaluate", "--run-id", "{train_run}", "--data-uri", "{data_uri}",
         "--experiment-name", "given-data", code=0),
    case("lottery-without-success", "capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3",
         "--epochs", "2", "--experiment-name", "no-success", code=0),
]


def _run(world, *args):
    return run_in_process(list(args), {"MLFLOW_TRACKING_URI": world.uri}, world.root)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_wrong_results_in_process(c, error_world):
    run_case(c, error_world)


def _runs(world, experiment):
    import mlflow

    client = mlflow.MlflowClient(world.uri)
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def test_a_diverging_loss_ends_the_run_failed_at_that_epoch(error_world):
    world, _ = error_world
    code, _, err = _run(world, "train", "--lr", "1e30", "--epochs", "30", "--experiment-name", "diverge-check")
    assert code == 2 and "lower --lr" in err
    client, (run,) = _runs(world, "diverge-check")
    assert run.info.status == "FAILED" and "at epoch 2" in run.data.tags["error"]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1] and losses[0].value == losses[0].value  # epoch 1 kept, no NaN logged


def test_a_loss_that_does_not_fit_starts_no_run(error_world):
    world, _ = error_world
    code, _, err = _run(world, "train", "--loss", "ce", "--experiment-name", "unfit")
    assert code == 2 and "--loss bce" in err
    assert _runs(world, "unfit")[1] == []


def test_evaluate_uses_the_data_it_is_given(error_world):
    import mlflow
    import torch

    from pipeline.data.io import bundle_from_uri

    world, _ = error_world
    data_uri = world.run_ids["data_uri"]
    code, out, _ = _run(world, "evaluate", "--run-id", world.run_ids["train_run"], "--data-uri", data_uri,
                        "--experiment-name", "given-data-check")
    assert code == 0 and data_uri in out
    _, (run,) = _runs(world, "given-data-check")
    m = run.data.metrics
    counted = m["true_positives"] + m["true_negatives"] + m["false_positives"] + m["false_negatives"]
    mlflow.set_tracking_uri(world.uri)
    bundle = bundle_from_uri(data_uri)  # 30 rows, data seed 7
    assert counted == len(bundle.train) == 30  # not the 1000-row fresh set that --data-uri used to be ignored for
    model = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    with torch.no_grad():
        expected = float(((model(bundle.train.X) > 0).float() == bundle.train.y).float().mean())
    assert m["test_accuracy"] == pytest.approx(expected)


def test_the_lottery_fit_says_when_the_data_cannot_test_it(error_world):
    world, _ = error_world
    code, out, _ = _run(world, "capacity", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "3", "--epochs", "2",
                        "--experiment-name", "no-success-check")
    assert code == 0 and "k = 3: no seed succeeded, so the data cannot test the model" in out
    assert "chi2" not in out.split("independent-lottery fit")[1]
    _, runs = _runs(world, "no-success-check")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert "lottery_chi2_k3" not in parent.data.metrics and parent.data.metrics["lottery_p_k3"] == 0


def test_lottery_fit_marks_every_untestable_case():
    import pandas as pd

    from pipeline.capacity.stats import lottery_fit

    def summary(successes, filters):
        return pd.DataFrame({"kernel_size": 3, "filters": filters, "successes": successes, "n": 10,
                             "p_success_lo": 0.0, "p_success_hi": 1.0})

    fits = {why: lottery_fit(summary(s, f)) for why, s, f in (
        ("no seed succeeded", [0, 0], [1, 2]), ("every seed succeeded", [10, 10], [1, 2]),
        ("one filter count", [3], [1]), ("", [2, 6], [1, 4]))}
    for why, fit in fits.items():
        assert (fit["untestable"] == why).all()
        assert fit["chi2"].isna().all() == bool(why)
    assert fits["no seed succeeded"]["p_k"].iloc[0] == 0 and fits["every seed succeeded"]["p_k"].iloc[0] == 1


def test_study_summary_never_creates_a_storage(error_world):
    world, _ = error_world
    for storage in (f"sqlite:///{world.root}/missing.db", f"{world.root}/missing.journal"):
        code, _, err = _run(world, "study-summary", "--storage", storage)
        assert code == 2 and "no such" in err
    assert not (world.root / "missing.db").exists() and not (world.root / "missing.journal").exists()


def test_a_diverging_trial_fails_alone_and_the_sweep_goes_on(error_world):
    world, _ = error_world
    code, out, err = _run(world, "sweep", "--objective", "accuracy", "--dataset", "digits", "--study-name", "nan",
                          "--storage", f"sqlite:///{world.root}/nan.db", "--lr-min", "1e30", "--lr-max", "1e31",
                          "--epochs", "1", "--n-trials", "2", "--filters", "2", "--kernel-sizes", "3",
                          "--progress", "false", "--experiment-name", "nan-trials")
    assert code == 0 and "2 fail" in out, err
    assert "Traceback" not in err
    client, runs = _runs(world, "nan-trials")
    trials = [r for r in runs if r.data.tags.get("stage") == "sweep-trial"]
    assert len(trials) == 2 and all(r.info.status == "FAILED" and "diverged" in r.data.tags["mlflow.note.content"]
                                    for r in trials)


@pytest.mark.slow
def test_wrong_results_as_real_processes(error_world):
    run_table_as_processes(CASES, error_world)
