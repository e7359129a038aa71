"""`pipeline capacity` on images: the grid, the statistics, the run's tables, figures and children."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, t

from helpers import SHARED_MNIST
from pipeline.capacity import stage as capacity
from pipeline.capacity.images.grid import SEED_COLUMNS, layer_filters
from pipeline.capacity.images.stats import bad_runs, separated, summarize
from pipeline.capacity.stats import mean_interval
from pipeline.cli import main
from pipeline.config.studies import CapacityConfig

FAST = dict(dataset="digits", epochs=2, max_batches=6)


# --------------------------------------------------------------------------- statistics
def test_mean_interval_is_students_t_interval():
    v = [0.9, 0.92, 0.95, 0.97, 0.99]
    mean, std, lo, hi = mean_interval(v)
    half = t.ppf(0.975, 4) * np.std(v, ddof=1) / np.sqrt(5)
    assert (mean, std, lo, hi) == pytest.approx((np.mean(v), np.std(v, ddof=1), np.mean(v) - half, np.mean(v) + half))
    assert np.isnan(mean_interval([0.5])[2])  # one seed: no interval
    v = [0.5, 0.75]  # two seeds: t with 1 dof is 12.706, not 1.96
    assert mean_interval(v)[3] == pytest.approx(0.625 + 12.706204736 * np.std(v, ddof=1) / np.sqrt(2))


def test_bad_runs_are_more_than_the_margin_below_the_cells_best_seed():
    table = pd.DataFrame({"filters": [1, 1, 1, 1, 2, 2], "kernel_size": 3, "seed": range(6),
                          "test_accuracy": [0.95, 0.90, 0.899, 0.10, 0.5, 0.46], "layer_filters": "x",
                          "num_parameters": 10, "final_loss": 0.1, "val_accuracy": 0.9})
    assert bad_runs(table, 0.05).tolist() == [False, False, True, True, False, False]
    row = summarize(table, 0.05).iloc[0]
    ci = binomtest(2, 4).proportion_ci(method="wilson")
    assert (row.bad_runs, row.bad_run_share) == (2, 0.5)
    assert (row.bad_run_share_lo, row.bad_run_share_hi) == pytest.approx((ci.low, ci.high))
    assert (row.test_accuracy_min, row.test_accuracy_max) == (0.10, 0.95)


def test_filter_rules():
    assert layer_filters(3, "all", (6, 16)) == (3, 3)
    assert layer_filters(3, "scale", (6, 16)) == (3, 8)
    assert layer_filters(12, "scale", (6, 16)) == (12, 32)
    assert layer_filters(3, "first", (6, 16)) == (3, 16)
    assert layer_filters(5, "all", (8,)) == (5,)


# --------------------------------------------------------------------------- config
def test_options_follow_the_recipe_and_the_synthetic_study_keeps_its_values():
    synthetic = CapacityConfig()
    assert (synthetic.lr, synthetic.momentum, synthetic.weight_decay, synthetic.epochs) == (0.05, 0.9, 1e-3, 500)
    digits = CapacityConfig(dataset="digits")  # the digits-lenet recipe's training
    assert (digits.lr, digits.momentum, digits.weight_decay, digits.epochs) == (0.05, 0.9, 0.0, 30)
    assert CapacityConfig(recipe="mnist-lenet", epochs=2).lr == 1e-3


@pytest.mark.parametrize("args,needle", [
    (["--model", "lenet"], "image options"),
    (["--dataset", "digits", "--filter-rule", "twice"], "--filter-rule"),
    (["--dataset", "digits", "--margin", "1"], "--margin"),
    (["--dataset", "digits", "--padding", "half"], "--padding"),
    (["--dataset", "digits", "--model", "detector1d", "--epochs", "1"], "2D net"),
    (["--dataset", "digits", "--padding", "valid", "--kernel-sizes", "7", "--epochs", "1"], "too large"),
    (["--dataset", "digits", "--tau", "0.3", "--test-n", "5"], "--tau, --test-n: options of the synthetic 1D study"),
    (["--recipe", "digits-lenet", "--n", "3"], "--n: options of the synthetic 1D study"),
    (["--dataset", "digits", "--filters", "2", "--kernel-sizes", "3", "--seeds", "2", "--epochs", "2",
      "--max-batches", "3", "--lr", "1e30"], "the training loss of seed 0 (and 1 other seed) became nan at epoch 1"),
])
def test_bad_input_is_one_line(args, needle, tracking_uri, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["capacity", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = [line for line in err.strip().splitlines() if "INFO mlflow" not in line]  # a new store says so
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], err


def test_a_study_named_by_its_image_recipe_logs_the_image_params():
    from pipeline.config.parsing import defining_params

    by_recipe, by_dataset = (defining_params(CapacityConfig(**kw)) for kw in ({"recipe": "digits-lenet"},
                                                                               {"dataset": "digits"}))
    assert {"filter_rule", "margin", "batch_norm"} <= set(by_recipe) and "tau" not in by_recipe
    assert not {"n", "width", "data_seed", "test_n", "test_seed"} & set(by_recipe)
    assert set(by_recipe) - {"recipe"} == set(by_dataset) - {"dataset"}
    assert {"tau", "n", "test_n"} <= set(defining_params(CapacityConfig()))  # the 1D study keeps its own


def test_a_diverged_seed_fails_the_study_run_and_writes_no_table(client, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["capacity", "--dataset", "digits", "--filters", "1,2", "--kernel-sizes", "3", "--seeds", "2",
              "--epochs", "2", "--max-batches", "3", "--lr", "1e30", "--table", str(tmp_path / "t.csv")])
    assert exit_info.value.code == 2 and "training diverged; lower --lr" in capsys.readouterr().err
    parent = client.search_runs([client.get_experiment_by_name("convnet-study").experiment_id],
                                filter_string="tags.study = 'image-capacity'")[0]
    assert parent.info.status == "FAILED" and "became nan" in parent.data.tags["error"]
    assert not (tmp_path / "t.csv").exists()  # no table of a study that did not train


# --------------------------------------------------------------------------- the stage
def test_image_capacity_run_logs_the_table_figures_and_children(client, tmp_path, capsys):
    csv = tmp_path / "seeds.csv"
    main(["capacity", "--dataset", "digits", "--filters", "1,4", "--kernel-sizes", "3", "--seeds", "3",
          "--epochs", "2", "--max-batches", "6", "--table", str(csv)])
    out = capsys.readouterr().out
    assert "test accuracy over 3 seeds" in out and "parent run" in out
    experiment = client.get_experiment_by_name("convnet-study").experiment_id
    parent = client.search_runs([experiment], filter_string="tags.study = 'image-capacity'")[0]
    run_id = parent.info.run_id
    assert parent.data.tags["dataset"] == "digits" and parent.data.tags["model"] == "lenet"
    assert parent.data.metrics["trainings"] == 6
    assert parent.info.run_name == "capacity digits F1,4 × k3"
    assert all(v not in ("", "None") for v in parent.data.params.values()) and "threads" not in parent.data.params

    table = pd.read_csv(client.download_artifacts(run_id, "capacity_table.csv"))
    assert list(table.columns) == [*SEED_COLUMNS, "bad_run"] and len(table) == 6
    assert table["seed"].tolist() == [0, 1, 2] * 2 and table["layer_filters"].tolist() == ["1,1"] * 3 + ["4,4"] * 3
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    assert table.groupby("filters")["num_parameters"].nunique().eq(1).all()
    assert table["num_parameters"].iloc[0] < table["num_parameters"].iloc[-1]
    summary = pd.read_csv(client.download_artifacts(run_id, "tables/summary.csv"))
    for row in summary.itertuples():
        acc = table[table["filters"] == row.filters]["test_accuracy"]
        assert row.test_accuracy_mean == pytest.approx(acc.mean()) and row.n == 3
        assert row.test_accuracy_lo <= row.test_accuracy_mean <= row.test_accuracy_hi
    curves = pd.read_csv(client.download_artifacts(run_id, "tables/curves.csv"))
    assert len(curves) == 2 * 3 * 2 and set(curves["epoch"]) == {1, 2}
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/accuracy_heatmap.png", "figures/accuracy_vs_parameters.png",
                       "figures/learning_curves.png", "figures/seed_spread.png"}

    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(c.data.params["filters"] for c in children) == ["1", "4"]
    for child in children:
        row = summary[summary["filters"] == int(child.data.params["filters"])].iloc[0]
        assert child.data.metrics["test_accuracy_mean"] == pytest.approx(row.test_accuracy_mean)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy_mean")]
        assert steps == [1, 2]


def test_a_seed_in_the_table_is_pipeline_train_with_that_seed(tracking_uri):
    import torch

    from pipeline.config.stages import TrainConfig
    from pipeline.train.loop import fit
    from pipeline.train.stage import load_data, make_model

    result = capacity.run(CapacityConfig(filters=(2,), kernel_sizes=(3,), seeds=2, first_seed=4, **FAST),
                          echo=lambda s: None)
    cfg, bundle = load_data(TrainConfig(dataset="digits", filters=(2, 2), kernel_size=(3,), seed=5, epochs=2,
                                        max_batches=6, log_interval=0))  # what `pipeline train` trains
    model = make_model(cfg, bundle)
    history = fit(model, bundle, cfg, torch.device("cpu"), echo=lambda s: None)
    row = result.table[result.table["seed"] == 5].iloc[0]
    assert row.final_loss == pytest.approx(history.train_loss[-1], rel=1e-5)
    assert row.val_accuracy == pytest.approx(history.val_accuracy[-1], abs=1e-9)
    assert row.num_parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_digits_accuracy_rises_with_filters_and_f1_and_f8_separate(tracking_uri, capsys):
    """Acceptance: `pipeline capacity --dataset digits --filters 1,2,4,8 --kernel-sizes 3,5 --seeds 16`."""
    main(["capacity", "--dataset", "digits", "--filters", "1,2,4,8", "--kernel-sizes", "3,5", "--seeds", "16"])
    print(capsys.readouterr().out)
    import mlflow

    run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.study = 'image-capacity'").iloc[0]
    summary = pd.read_csv(mlflow.MlflowClient().download_artifacts(run.run_id, "tables/summary.csv"))
    for k, part in summary.groupby("kernel_size"):
        means = part.sort_values("filters")["test_accuracy_mean"].to_numpy()
        assert (np.diff(means) > 0).all(), (k, means)
        rows = part.set_index("filters")
        assert separated(rows.loc[1], rows.loc[8]), part


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"the real MNIST test split is not at {SHARED_MNIST}")
def test_real_mnist_images(tracking_uri):
    """The real MNIST test split (8,000 to train on, 2,000 held out), smallconv, a few minibatches."""
    result = capacity.run(CapacityConfig(recipe="mnist-small", data_dir=str(SHARED_MNIST), filters=(1, 4),
                                         kernel_sizes=(5,), seeds=2, epochs=1, max_batches=10, normalize="standard"),
                          echo=lambda s: None)
    assert len(result.table) == 4 and (result.table["test_accuracy"] > 0.3).all()
