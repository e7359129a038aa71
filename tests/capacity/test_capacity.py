"""The capacity study: success, intervals, the lottery fit, the stage's MLflow output and CLI."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

from helpers import REPO, run_cli
from pipeline.capacity import stage as capacity
from pipeline.capacity import study
from pipeline.capacity.multiseed import train_seeds
from pipeline.capacity.outcomes import COLUMNS, Settings, seed_table
from pipeline.capacity.stats import lottery_fit, p_success, summarize
from pipeline.capacity.story import generalisation_text
from pipeline.config.parsing import build_config
from pipeline.config.recipes import RECIPES
from pipeline.config.studies import CapacityConfig
from pipeline.data.synthetic import make_synthetic
from pipeline.errors import ConfigError
from pipeline.evaluate.exact import exact_scores
from pipeline.models.registry import build_model


def table_of(losses, accs, filters=3, k=5):
    return pd.DataFrame({"filters": filters, "kernel_size": k, "seed": range(len(losses)), "final_loss": losses,
                         "train_accuracy": accs, "test_accuracy": 0.9, "success": False})


# --------------------------------------------------------------------------- rates
def test_p_success_counts_loss_below_tau_and_full_accuracy_with_wilson_interval():
    losses = [0.01, 0.01, 0.049, 0.05, 0.3, 0.01, 0.2, 0.01, 0.3, 0.3]
    accs = [1.0, 1.0, 1.0, 1.0, 0.85, 0.9867, 1.0, 1.0, 0.85, 0.85]
    est = p_success(table_of(losses, accs), 0.05)
    # successes: rows 0, 1, 2, 7 (row 3 is not below tau, row 5 misclassifies one example)
    assert (est.k, est.n, est.p) == (4, 10, 0.4)
    ci = binomtest(4, 10).proportion_ci(method="wilson")
    assert (est.lo, est.hi) == pytest.approx((ci.low, ci.high))
    assert est.lo < 0.4 < est.hi
    assert p_success(table_of(losses, accs), 0.1).k == 5  # row 3 joins
    assert p_success(table_of(losses, accs), 0.02).k == 3


def test_settings_defaults_come_from_the_config_and_the_recipe():
    s = Settings.from_config(CapacityConfig(epochs=7))
    assert s.epochs == 7 and s.tau == CapacityConfig().tau
    recipe = RECIPES["synthetic"].values
    for name in ("lr", "momentum", "weight_decay", "epochs"):
        assert getattr(CapacityConfig(), name) == recipe[name]


def test_seed_table_is_the_tidy_table_of_train_seeds():
    settings = dataclasses.replace(Settings.from_config(), epochs=80, test_n=200)
    t = seed_table(2, 3, [4, 5, 6], settings)
    assert list(t.columns) == COLUMNS
    assert t["seed"].tolist() == [4, 5, 6] and set(t["filters"]) == {2} and set(t["kernel_size"]) == {3}
    X, y = make_synthetic(75, 20, 0)
    Xt, yt = make_synthetic(200, 20, 2)
    r = train_seeds(2, 3, [4, 5, 6], X, y, epochs=80, X_test=Xt, y_test=yt)
    np.testing.assert_array_equal(t["final_loss"], r.final_loss)
    np.testing.assert_array_equal(t["test_accuracy"], r.test_accuracy)
    assert t["success"].tolist() == list((r.final_loss < 0.05) & (r.train_accuracy == 1.0))
    for i, seed in enumerate([4, 5, 6]):  # the batched exact scores are evaluate's, seed by seed, on Detector1d
        model = build_model("detector1d", (1, 20), 1, (2,), (3,), seed=0)
        model.load_state_dict(r.state_dict(i))
        one = exact_scores(model, 20, X)
        assert t["exact_accuracy"][i] == pytest.approx(one.exact_accuracy, abs=1e-12), seed
        assert t["unseen_accuracy"][i] == pytest.approx(one.unseen_accuracy, abs=1e-12), seed


def test_p_success_rises_with_filters_and_the_intervals_of_1_and_8_filters_do_not_overlap():
    settings = dataclasses.replace(Settings.from_config(), test_n=100)
    seeds = range(100)
    est = {f: p_success(seed_table(f, 5, seeds, settings), settings.tau) for f in (1, 4, 8)}
    assert est[1].p < est[4].p < est[8].p
    assert est[1].hi < est[8].lo, est

def test_the_intervals_are_scipys_to_the_bit():
    """stats computes them without importing scipy.stats (half a second of every capacity process)."""
    from scipy.special import ndtri
    from scipy.stats import chi2, t

    from pipeline.capacity.stats import Z95, mean_interval, wilson

    assert Z95 == float(ndtri(0.5 + 0.5 * 0.95))
    for n in range(1, 201):
        for k in range(n + 1):
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson(k, n)[3:] == (float(ci.low), float(ci.high)), (k, n)
    values = np.random.default_rng(0).normal(size=7)
    mean, std, lo, hi = mean_interval(values)
    half = float(t.ppf(0.975, 6)) * std / np.sqrt(7)
    assert (lo, hi) == (mean - half, mean + half)
    fit = lottery_fit(lottery_summary(0.3, 32))
    assert fit["p_value"].tolist() == [float(chi2.sf(fit["chi2"].iloc[0], fit["dof"].iloc[0]))] * len(fit)


# --------------------------------------------------------------------------- lottery fit
def lottery_summary(p_k: float, n: int, observed=None) -> pd.DataFrame:
    F = np.arange(1, 9)
    P = 1 - (1 - p_k) ** F if observed is None else np.asarray(observed)
    rows = []
    for f, p in zip(F, P):
        k = int(round(p * n))
        ci = binomtest(k, n).proportion_ci(method="wilson")
        rows.append({"filters": f, "kernel_size": 5, "n": n, "successes": k, "p_success": k / n,
                     "p_success_lo": ci.low, "p_success_hi": ci.high})
    return pd.DataFrame(rows)


def test_lottery_fit_recovers_p_k_and_flags_a_deviating_curve():
    fit = lottery_fit(lottery_summary(0.2, 10_000))
    assert fit["p_k"].iloc[0] == pytest.approx(0.2, abs=2e-3)
    assert fit["inside_interval"].all() and fit["p_value"].iloc[0] > 0.05
    assert fit["deviation"].abs().max() < 0.01
    # a step (nothing, then everything) is not a lottery
    steep = lottery_fit(lottery_summary(0.2, 400, observed=[0.01, 0.02, 0.05, 0.5, 0.9, 0.97, 0.99, 1.0]))
    assert steep["p_value"].iloc[0] < 1e-6
    assert steep["deviation"].abs().max() > 0.15
    assert not steep["inside_interval"].all()


def test_summary_reports_other_taus_and_generalisation_of_successes_and_failures():
    t = table_of([0.01, 0.015, 0.03, 0.3], [1.0, 1.0, 1.0, 0.85])
    t["test_accuracy"] = [1.0, 0.99, 0.98, 0.8]
    t["unseen_accuracy"] = [1.0, 0.97, 0.94, 0.7]
    row = summarize(t, 0.05).iloc[0]
    assert row["p_success"] == 0.75 and row["p_success_tau_0.02"] == 0.5 and row["p_success_tau_0.1"] == 0.75
    assert row["test_accuracy_success"] == pytest.approx(0.99) and row["test_accuracy_failed"] == 0.8
    assert row["unseen_accuracy_success"] == pytest.approx(0.97) and row["unseen_accuracy_failed"] == 0.7
    text = generalisation_text(summarize(t, 0.05))
    assert "seeds that succeed 0.970, seeds that fail 0.700" in text


# --------------------------------------------------------------------------- stage
def test_capacity_run_logs_children_figures_and_tables(client, tmp_path):
    csv = tmp_path / "seeds.csv"
    cfg = CapacityConfig(filters=(1, 3), kernel_sizes=(3, 5), seeds=6, epochs=60, test_n=100, table=str(csv))
    lines: list[str] = []
    result = capacity.run(cfg, echo=lines.append)

    parent = client.get_run(result.run_id)
    assert parent.data.tags["stage"] == "capacity" and parent.info.status == "FINISHED"
    threads = study.thread_count(0)  # the config's 0: every core, for the compiled trainer (not torch's count)
    assert parent.data.tags["trainer"] == f"fused (compiled, {threads} thread{'s' if threads > 1 else ''})"
    assert parent.data.params["filters"] == "1,3" and parent.data.params["seeds"] == "6"
    assert parent.data.metrics["trainings"] == 24
    assert "lottery_p_k5" in parent.data.metrics
    artifacts = {a.path for d in ("figures", "tables") for a in client.list_artifacts(result.run_id, d)}
    assert artifacts == {"figures/p_success_heatmap.png", "figures/p_success_vs_filters.png",
                         "figures/final_loss_histogram.png", "tables/seeds.csv", "tables/summary.csv",
                         "tables/lottery_fit.csv"}
    logged = pd.read_csv(client.download_artifacts(result.run_id, "tables/seeds.csv"))
    assert list(logged.columns) == COLUMNS and len(logged) == 2 * 2 * 6

    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 4
    for child in children:
        f, k = int(child.data.params["filters"]), int(child.data.params["kernel_size"])
        est = p_success(result.table[(result.table.filters == f) & (result.table.kernel_size == k)], 0.05)
        m = child.data.metrics
        assert (m["p_success"], m["p_success_lo"], m["p_success_hi"]) == pytest.approx((est.p, est.lo, est.hi))
        assert m["n_seeds"] == 6 and child.data.tags["stage"] == "capacity"

    local = pd.read_csv(csv)
    assert list(local.columns) == ["filters", "kernel_size", "seed", "final_loss", "train_accuracy",
                                   "test_accuracy", "exact_accuracy", "unseen_accuracy", "success"]
    pd.testing.assert_frame_equal(local, logged)
    assert any("P(success)" in line for line in lines) and any("lottery" in line for line in lines)


def test_capacity_cli_small_grid(tracking_uri, tmp_path):
    csv = tmp_path / "t.csv"
    code, out, err = run_cli("capacity", "--filters", "2", "--kernel-sizes", "3", "--seeds", "3", "--epochs", "20",
                             "--test-n", "50", "--table", str(csv))
    assert code == 0, err
    assert "P(success)" in out and "parent run" in out
    assert len(pd.read_csv(csv)) == 3


@pytest.mark.parametrize("args,needle", [
    (["--seeds", "0"], "--seeds"),
    (["--filters", ""], "--filters"),
    (["--kernel-sizes", "3,4"], "odd"),
    (["--tau", "0"], "--tau"),
    (["--tau", "1"], "--tau"),
    (["--filters", "1-0"], "--filters"),
])
def test_capacity_cli_bad_input_is_one_line(args, needle):
    code, out, err = run_cli("capacity", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_config_rejects_bad_values():
    for values in ({"filters": "1,1"}, {"test_seed": "0"}, {"threads": "-1"}, {"momentum": "1"}):
        with pytest.raises(ConfigError):
            build_config(CapacityConfig, values)


def test_threads_default_to_every_core_for_1d_and_to_the_recipes_for_images():
    """Every core (torch's default, 0) for the 1D study, whose compiled trainer splits the seeds over them
    (not the synthetic recipe's 1, which is for torch's per-op overhead in `pipeline train`); the recipe's
    for the image nets, as `pipeline train`."""
    from pipeline.config.recipes import get_recipe

    assert CapacityConfig().threads == 0 and get_recipe("synthetic").values["threads"] == 1
    assert CapacityConfig(threads=1).threads == 1
    assert CapacityConfig(dataset="digits").threads == get_recipe("digits-lenet").values["threads"] == 0
    assert CapacityConfig(dataset="digits", threads=1).threads == 1


def test_default_grid_runs_in_under_two_minutes(client):
    """The acceptance run: 8 x 3 x 200 = 4,800 trainings, logged (about 5-10 s here)."""
    t0 = time.perf_counter()
    result = capacity.run(CapacityConfig(), echo=lambda _: None)
    assert time.perf_counter() - t0 < 120
    assert len(result.table) == 8 * 3 * 200
    s = result.summary.set_index(["filters", "kernel_size"])
    assert s.loc[(1, 5), "p_success_hi"] < s.loc[(8, 5), "p_success_lo"]


def test_the_default_grid_succeeds_on_the_same_seeds_with_either_engine():
    """The compiled engine's P(success) table is the torch engine's (the trainer before it), seed for seed:
    all 4,800 success flags of the default grid (about 6 s)."""
    from pipeline.capacity.outcomes import datasets
    from pipeline.capacity.stats import is_success

    s = Settings.from_config(CapacityConfig())
    X, y, _, _ = datasets(s.n, s.width, s.data_seed, s.test_n, s.test_seed)
    for k in (3, 5, 7):
        for f in range(1, 9):
            flags = [is_success(r.final_loss, r.train_accuracy, s.tau) for r in (
                train_seeds(f, k, range(200), X, y, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                            epochs=s.epochs, engine=engine) for engine in ("fused", "torch"))]
            assert np.array_equal(*flags), f"F={f} k={k}"
            assert 0 < flags[0].sum() < 200


def test_a_studys_thread_count_holds_for_its_block_and_zero_keeps_torchs_default():
    from pipeline.capacity import study

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with study.torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with study.torch_threads(0):
        assert torch.get_num_threads() == before


def test_the_compiled_trainers_threads_are_the_options_or_one_per_core_within_numbas_pool(monkeypatch):
    import numba

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert study.thread_count(0) == numba.config.NUMBA_DEFAULT_NUM_THREADS == len(os.sched_getaffinity(0))
    assert study.thread_count(1) == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # numba's pool: what fused.sgd_epochs can run on
    assert study.thread_count(0) == study.thread_count(4) == 1
    assert capacity.trainer_label("cpu", 4) == "fused (compiled, 1 thread)" and capacity.trainer_label("cuda", 0) == "torch"


@pytest.mark.slow
def test_the_1d_study_on_the_cpu_never_loads_torch(tmp_path):
    """Its process trains, scores and logs in numpy and numba: torch's import would be 2 CPU-s of the default
    grid's 5 s on 2 cores. A fresh interpreter (after the check of torch's initialisation that `make setup`
    stamps) runs a small grid and says whether torch was loaded."""
    from pipeline.capacity import initial

    initial.check_torch()
    code = ("import sys\nfrom pipeline import cli\n"
            "sys.argv = ['pipeline', 'capacity', '--filters', '1-2', '--kernel-sizes', '3,5', '--seeds', '8', "
            "'--epochs', '30', '--table', 'seeds.csv']\n"
            "try:\n    cli.main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "torch not loaded"
    assert len(pd.read_csv(tmp_path / "seeds.csv")) == 2 * 2 * 8
