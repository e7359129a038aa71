"""The notebooks run headless, top to bottom, against a small store that the test builds, and what
they print agrees with values that the test reads on its own: from the stages' results in memory,
from the MLflow store, or from the Optuna database with plain SQL.

A probe cell appended after a notebook's last cell prints the notebook's own tables as JSON.
"""
from __future__ import annotations

import json
import re
import sqlite3

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from helpers import REPO
from pipeline.config.stages import TrainConfig
from pipeline.train import stage as train

NOTEBOOKS = REPO / "notebooks"


def execute(name: str, cwd, probe: str = "") -> nbformat.NotebookNode:
    """Run the notebook in ``cwd``; ``probe``, when given, runs last in the same kernel."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(probe, metadata={"probe": True}))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs_text(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def printed(nb) -> str:
    """What the notebook's cells printed (stdout), the probe's JSON excluded."""
    return "".join(o.get("text", "") for c in nb.cells if not c.metadata.get("probe")
                   for o in c.get("outputs", []) if o.get("name") == "stdout")


def probed(nb):
    """The JSON that the probe cell printed."""
    return json.loads("".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout"))


def no_errors(nb) -> None:
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_outputs_are_stripped_in_git(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


def test_03_compare_runs(tracking_uri, tmp_path):
    runs = ((3, 0), (4, 0), (4, 1))  # (filters, seed)
    results = [train.run(TrainConfig(filters=(f,), seed=seed, epochs=40, image_every=0), echo=lambda s: None)
               for f, seed in runs]
    nb = execute("03-compare-runs.ipynb", tmp_path,
                 probe="print(summary.reset_index().astype({'filters': int}).to_json(orient='records'))")
    no_errors(nb)
    assert "image/png" in outputs_text(nb)  # the learning-curve figure was drawn
    got = {row["filters"]: row for row in probed(nb)}
    for f in (3, 4):  # the final training loss per filter count, from the runs' own last-epoch metrics
        losses = [r.final["train_loss"] for r, (filters, _) in zip(results, runs) if filters == f]
        assert got[f]["count"] == len(losses)
        assert got[f]["mean"] == pytest.approx(np.mean(losses), rel=1e-6)
        assert (got[f]["min"], got[f]["max"]) == pytest.approx((min(losses), max(losses)), rel=1e-6)


def _optuna_best(db) -> tuple[int, float]:
    """(trials, best value of the complete ones) of the one study in an Optuna SQLite file, by SQL."""
    with sqlite3.connect(db) as con:
        n = con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        best = con.execute("SELECT MAX(v.value) FROM trial_values v JOIN trials t ON t.trial_id = v.trial_id "
                           "WHERE t.state = 'COMPLETE'").fetchone()[0]
    return n, best


def test_01_capacity_study(tracking_uri, tmp_path, monkeypatch):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig, SweepConfig
    from pipeline.sweep import stage as sweep

    cap = capacity.run(CapacityConfig(filters=(1, 2, 3, 4), kernel_sizes=(3, 5), seeds=40, epochs=300),
                       echo=lambda s: None)
    sweep.run(SweepConfig(study_name="nb", filters=(1, 2, 3, 4), kernel_sizes=(3, 5), seeds=16, epochs=200,
                          n_trials=6, progress=False), echo=lambda s: None)
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    nb = execute("01-capacity-study.ipynb", tmp_path, probe="import json; print(json.dumps([[int(r.filters), "
                 "int(r.kernel_size), float(r.p_success)] for r in summary.itertuples()]))")
    no_errors(nb)
    text = outputs_text(nb)
    assert text.count("image/png") >= 4  # heatmap, bands, histogram, slice
    out = printed(nb)
    assert f"run {cap.run_id}: 320 trainings, 8 configurations, tau = 0.05" in out  # 4 F x 2 k x 40 seeds
    # P(success) per configuration: the share of successful seeds, counted here from the per-seed results
    share = cap.table.groupby(["filters", "kernel_size"])["success"].mean()
    assert {(f, k): p for f, k, p in probed(nb)} == pytest.approx(share.to_dict())
    trials, best = _optuna_best(tmp_path / "optuna.db")
    shown = re.search(r"study 'nb': (\d+) trials; best \{.*\} -> (\d\.\d{3})", out)
    assert shown and int(shown.group(1)) == trials == 6 and shown.group(2) == f"{best:.3f}"  # as printed


def test_02_what_filters_learn(tracking_uri, tmp_path):
    from pipeline.evaluate import probes
    from pipeline.models.registry import first_conv

    result = train.run(TrainConfig(dataset="digits", epochs=3, image_every=1), echo=lambda s: None)
    nb = execute("02-what-filters-learn.ipynb", tmp_path)
    no_errors(nb)
    assert outputs_text(nb).count("image/png") >= 4  # filters, their evolution, feature maps, activation maximisation
    out = printed(nb)
    conv = first_conv(result.model)
    assert f"run {result.run_id}: recipe digits-lenet, dataset digits, first layer {conv}" in out
    # the notebook scores the model it loads from the store; the test scores the trained model in memory
    trained = np.mean([s["best_similarity"] for s in probes.sobel_scores(conv.weight.detach().numpy())])
    shown = re.search(r"mean best similarity: trained (\d\.\d{3}), untrained (\d\.\d{3})", out)
    assert shown and float(shown.group(1)) == pytest.approx(trained, abs=5e-4 + 1e-9)  # rounded to 3 places
    # (the model reloaded from the store may differ from the one in memory by float rounding)


def test_05_minima(tracking_uri, tmp_path):
    from pipeline.capacity import replication
    from pipeline.capacity import stage as capacity
    from pipeline.config.diagnosis import DiagnoseConfig
    from pipeline.config.pattern import PatternCapacityConfig
    from pipeline.config.studies import CapacityConfig
    from pipeline.diagnose import stage as diagnose

    quiet = lambda s: None  # noqa: E731
    run = capacity.run(CapacityConfig(filters=(2, 3), kernel_sizes=(5,), seeds=8, epochs=200, test_n=50), echo=quiet)
    diag = diagnose.run(DiagnoseConfig(capacity_run=run.run_id, pairs=2, slice_points=7, long_factor=2), echo=quiet)
    replication.run(PatternCapacityConfig(filters=(1, 2), seeds=6, steps=30, test_pairs=30), echo=quiet)
    nb = execute("05-minima.ipynb", tmp_path)
    no_errors(nb)
    assert outputs_text(nb).count("image/png") >= 7  # verdicts, eigenvalues, classes, tickets, paths, slice, published
    out = printed(nb)
    assert f"diagnose run {diag.run_id} of capacity run {run.run_id}: 16 seeds" in out  # 2 F x 8 seeds
    failed = run.table[~run.table["success"].astype(bool)]  # the capacity run's own verdicts
    escaped = diag.table.merge(failed[["filters", "kernel_size", "seed"]])["escaped"].astype(bool).sum()
    assert f"long run: {escaped} of {len(failed)} failed seeds escape" in out
    over = int((diag.paths["barrier"] > DiagnoseConfig(capacity_run="x").delta).sum())
    assert f"{len(diag.paths)} paths; barrier above delta = {DiagnoseConfig(capacity_run='x').delta:g} on {over}" in out


def test_04_image_capacity(tracking_uri, tmp_path):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig

    cap = capacity.run(CapacityConfig(dataset="digits", filters=(1, 4), kernel_sizes=(3, 5), seeds=4, epochs=3,
                                      max_batches=8), echo=lambda s: None)
    nb = execute("04-image-capacity.ipynb", tmp_path)
    no_errors(nb)
    assert outputs_text(nb).count("image/png") >= 4  # heatmap, capacity curve, learning curves, spread
    out = printed(nb)
    assert f"run {cap.run_id}: lenet on digits, 16 trainings, 4 cells of 4 seeds, 3 epochs" in out  # 2 F x 2 k x 4
    for k in (3, 5):  # each cell's mean test accuracy, from the per-seed results in memory
        means = [cap.table.query(f"filters == {f} and kernel_size == {k}")["test_accuracy"].mean() for f in (1, 4)]
        line = re.search(rf"k = {k}: F = 1: (\d\.\d{{3}}) \[.*F = 4: (\d\.\d{{3}}) \[", out)
        assert line and [line.group(1), line.group(2)] == [f"{m:.3f}" for m in means]  # as printed
