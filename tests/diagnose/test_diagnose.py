"""Stage diagnose: what it logs, that it replays the capacity run exactly, and what it refuses."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from errorpath import error_lines
from pipeline.capacity import stage as capacity
from pipeline.capacity.multiseed import train_seeds
from pipeline.capacity.outcomes import Settings
from pipeline.cli import main
from pipeline.config.diagnosis import DiagnoseConfig
from pipeline.config.recipes import resolve
from pipeline.config.stages import TrainConfig
from pipeline.config.studies import CapacityConfig
from pipeline.data.load import synthetic_bundle
from pipeline.data.synthetic import make_synthetic
from pipeline.diagnose import stage as diagnose
from pipeline.diagnose.replay import long_run, replay
from pipeline.diagnose.verdicts import VERDICTS
from pipeline.errors import ConfigError
from pipeline.models.registry import build_model
from pipeline.train.loop import fit

COLUMNS = ["filters", "kernel_size", "seed", "final_loss", "grad_norm", "hessian_min", "hessian_max", "verdict"]


def quiet(_):
    pass


@pytest.fixture
def capacity_run(tracking_uri):
    return capacity.run(CapacityConfig(filters=(1, 2), kernel_sizes=(3,), seeds=6, epochs=150, test_n=50),
                        echo=quiet)


def test_diagnose_logs_the_table_figures_and_summaries(capacity_run, client, tmp_path):
    csv = tmp_path / "diagnosis.csv"
    lines: list[str] = []
    result = diagnose.run(DiagnoseConfig(capacity_run=f"runs:/{capacity_run.run_id}", pairs=1, slice_points=5,
                                         long_factor=2, table=str(csv)), echo=lines.append)
    run = client.get_run(result.run_id)
    assert run.data.tags["stage"] == "diagnose" and run.data.tags["capacity_run"] == capacity_run.run_id
    assert run.info.status == "FINISHED"
    logged = pd.read_csv(client.download_artifacts(result.run_id, "diagnosis.csv"))
    assert set(COLUMNS) <= set(logged.columns) and len(logged) == 12
    assert set(logged["verdict"]) <= set(VERDICTS)
    pd.testing.assert_frame_equal(pd.read_csv(csv), logged)
    # the replay ends where the capacity run ended, loss for loss
    merged = logged.merge(capacity_run.table, on=["filters", "kernel_size", "seed"], suffixes=("", "_capacity"))
    np.testing.assert_array_equal(merged["final_loss"], merged["final_loss_capacity"])
    assert (merged["verdict"] == "solved").tolist() == merged["success_capacity"].tolist()
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert {"figures/verdict_shares.png", "figures/hessian_eigenvalues.png", "figures/filter_classes.png",
            "figures/ticket_curve.png"} <= figures
    tables = {a.path for a in client.list_artifacts(result.run_id, "tables")}
    assert {"tables/sensitivity.csv", "tables/filter_classes.csv", "tables/tickets.csv"} <= tables
    assert run.data.metrics["replay_max_abs_diff"] == 0
    assert any("verdict shares" in line for line in lines) and any("escaped in the long run" in line for line in lines)


def test_a_replay_of_fewer_seeds_and_filter_counts_on_two_threads_ends_on_the_runs_losses_to_the_bit(
        capacity_run, client):
    """The compiled engine's numbers for a seed do not depend on what is batched beside it or on the threads:
    three of the six seeds of one of the two filter counts replay the run's final losses exactly."""
    result = diagnose.run(DiagnoseConfig(capacity_run=capacity_run.run_id, filters=(2,), seeds=3, pairs=0,
                                         slice_points=3, long_factor=1, threads=2), echo=quiet)
    assert client.get_run(result.run_id).data.metrics["replay_max_abs_diff"] == 0
    assert len(result.table) == 3


def test_replay_ends_at_the_capacity_trainers_weights_and_the_long_run_continues_it():
    settings = Settings.from_config(CapacityConfig(epochs=60))
    seeds = (0, 1, 2, 3)
    traj = replay(3, 5, seeds, settings, last_epochs=10)
    X, y = make_synthetic(75, 20, 0)
    r = train_seeds(3, 5, seeds, X, y, epochs=60)
    np.testing.assert_array_equal(traj.final_loss, r.final_loss)
    for i in range(len(seeds)):
        taps = traj.theta[i, :15].reshape(3, 5).float()
        assert torch.equal(taps, torch.from_numpy(r.conv_weight[i, :, 0])) and traj.theta[i, -1].float() == r.linear_bias[i, 0]
    # ... and where `pipeline train --seed 2` ends (its own loop), within float rounding
    cfg = resolve(TrainConfig(filters=(3,), kernel_size=(5,), seed=2, epochs=60, print_every=0))
    bundle = synthetic_bundle(75, 20, 0, 1)
    model = build_model("detector1d", bundle.input_shape, 1, cfg.filters, cfg.kernel_size, seed=2)
    fit(model, bundle, cfg, torch.device("cpu"), echo=quiet)
    torch.testing.assert_close(traj.theta[2, :15].reshape(3, 5).float(), model.conv.weight.detach()[:, 0],
                               atol=1e-5, rtol=0)
    assert traj.switched.shape == (60, 4) and (traj.path_length >= traj.moved - 1e-7).all()
    # continuing with factor 1 is training twice as long (other batch widths: rounding only)
    loss, _ = long_run(traj, np.array([1, 3]), settings, factor=1)
    longer = train_seeds(3, 5, [1, 3], X, y, epochs=121)
    np.testing.assert_allclose(loss, longer.final_loss, atol=1e-5)


def test_diagnose_refuses_what_it_cannot_replay_in_one_line(capacity_run, tracking_uri, capsys):
    from pipeline.capacity import replication
    from pipeline.config.pattern import PatternCapacityConfig
    from pipeline.tracking import runs

    pattern_run = replication.run(PatternCapacityConfig(filters=(1,), seeds=2, steps=3, test_pairs=5), echo=quiet)
    with runs.stage_run("train", run_name="not a capacity run") as other:
        pass
    client = __import__("mlflow").MlflowClient()
    child = client.search_runs([client.get_run(capacity_run.run_id).info.experiment_id],
                               filter_string=f"tags.mlflow.parentRunId = '{capacity_run.run_id}'")[0]
    cases = [(pattern_run.run_id, "task 'pattern1101'"), (other.info.run_id, "is a train run, not a capacity run"),
             (child.info.run_id, "one configuration of capacity run"), ("0123456789abcdef", "no such run"),
             (capacity_run.run_id + " --filters 7", "not in capacity run")]
    for run_id, needle in cases:
        args = ["diagnose", "--capacity-run", *run_id.split(" ")]
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("Error: ") and needle in err, (run_id, err)
        assert len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="--capacity-run is required"):
        DiagnoseConfig()


# --------------------------------------------------------------------------- failures, made to happen
def _diagnose_cli(capacity_run, capsys, *extra: str) -> tuple[int, list[str], str]:
    """``pipeline diagnose`` on the fixture's run, two seeds of F = 1: (exit code, stdout lines, stderr)."""
    args = ["diagnose", "--capacity-run", capacity_run.run_id, "--filters", "1", "--seeds", "2", "--pairs", "0",
            "--slice-points", "3", "--long-factor", "1", *extra]
    try:
        code = main(args) or 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out.splitlines(), error_lines(out.err)


def test_a_replay_that_differs_from_its_capacity_run_fails_diagnose_with_exit_1(capacity_run, client, capsys,
                                                                              monkeypatch):
    from pipeline.diagnose.measure import REPLAY_TOLERANCE
    from pipeline.tracking import studies

    real = studies.load_table

    def shifted(run_id, artifact_file):  # the run's table, seed 1's loss moved by more than rounding explains
        table = real(run_id, artifact_file)
        table.loc[table["seed"] == 1, "final_loss"] += 3 * REPLAY_TOLERANCE
        return table

    monkeypatch.setattr(studies, "load_table", shifted)
    code, _, err = _diagnose_cli(capacity_run, capsys)
    logged = capacity_run.table.set_index(["filters", "seed"]).loc[(1, 1), "final_loss"]
    assert code == 1 and len(err) == 1, err
    err = err[0]
    assert err.startswith("Error: the replay does not match capacity run") and "F=1 k=3 seed 1" in err, err
    assert f"the run logged {logged + 3 * REPLAY_TOLERANCE:.6g}" in err and f"{3 * REPLAY_TOLERANCE:.2g}" in err
    (run,) = [r for r in client.search_runs([client.get_run(capacity_run.run_id).info.experiment_id])
              if r.data.tags.get("stage") == "diagnose"]
    assert run.info.status == "FAILED" and "does not match" in run.data.tags["error"]


def test_a_replay_that_cannot_be_checked_says_why_in_one_line(capacity_run, client, capsys, monkeypatch):
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import studies

    def unreadable(run_id, artifact_file):
        raise MlflowException(f"{artifact_file}: artifact store answered 404")

    monkeypatch.setattr(studies, "load_table", unreadable)
    code, lines, _ = _diagnose_cli(capacity_run, capsys)
    assert code == 0
    why = [line for line in lines if "replay not checked" in line]
    assert len(why) == 1 and "at most" not in why[0] and "nan" not in why[0], lines[:3]
    assert "cannot read its tables/seeds.csv (MlflowException: tables/seeds.csv: artifact store answered 404)" in why[0]
    (run_id,) = [line.split()[-1] for line in lines if line.startswith("diagnose run ")]
    assert "replay_max_abs_diff" not in client.get_run(run_id).data.metrics  # no number where none was measured


@pytest.mark.parametrize("target,error,needle", [
    ("get_run", OSError("connection reset"), "no such run in this tracking store (connection reset)"),
    ("load_dict", ValueError("Expecting value: line 1 column 1"), "cannot read its config.json (Expecting value"),
])
def test_a_capacity_run_that_cannot_be_read_is_refused_in_one_line(capacity_run, capsys, monkeypatch, target, error,
                                                                  needle):
    from pipeline.tracking import studies

    def broken(*args):
        raise error

    monkeypatch.setattr(studies, target, broken)
    code, _, err = _diagnose_cli(capacity_run, capsys)
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_a_parent_run_that_cannot_be_read_is_not_taken_for_a_capacity_parent(monkeypatch):
    from mlflow.exceptions import MlflowException

    from pipeline.diagnose import source
    from pipeline.tracking import studies

    def missing(run_id):
        raise MlflowException(f"Run '{run_id}' not found")

    monkeypatch.setattr(studies, "get_run", missing)
    assert source._stage_of("0123456789abcdef") is None
