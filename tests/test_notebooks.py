"""The notebooks run headless, top to bottom, against a small store that the test builds."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import REPO
from pipeline.config.stages import TrainConfig
from pipeline.train import stage as train

NOTEBOOKS = REPO / "notebooks"


def execute(name: str, cwd) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs_text(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_outputs_are_stripped_in_git(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


def test_03_compare_runs(tracking_uri, tmp_path):
    for filters, seed in ((3, 0), (4, 0), (4, 1)):
        train.run(TrainConfig(filters=(filters,), seed=seed, epochs=40, image_every=0), echo=lambda s: None)
    nb = execute("03-compare-runs.ipynb", tmp_path)
    text = outputs_text(nb)
    assert "image/png" in text  # the learning-curve figure was drawn
    assert '"error"' not in text


def test_01_capacity_study(tracking_uri, tmp_path, monkeypatch):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig, SweepConfig
    from pipeline.sweep import stage as sweep

    capacity.run(CapacityConfig(filters=(1, 2, 3, 4), kernel_sizes=(3, 5), seeds=40, epochs=300), echo=lambda s: None)
    sweep.run(SweepConfig(study_name="nb", filters=(1, 2, 3, 4), kernel_sizes=(3, 5), seeds=16, epochs=200,
                          n_trials=6, progress=False), echo=lambda s: None)
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    nb = execute("01-capacity-study.ipynb", tmp_path)
    text = outputs_text(nb)
    assert text.count("image/png") >= 4  # heatmap, bands, histogram, slice
    assert "study 'nb': 6 trials" in text


def test_02_what_filters_learn(tracking_uri, tmp_path):
    train.run(TrainConfig(dataset="digits", epochs=3, image_every=1), echo=lambda s: None)
    nb = execute("02-what-filters-learn.ipynb", tmp_path)
    text = outputs_text(nb)
    assert text.count("image/png") >= 4  # filters, their evolution, feature maps, activation maximisation
    assert "mean best similarity: trained" in text


def test_05_minima(tracking_uri, tmp_path):
    from pipeline.capacity import replication
    from pipeline.capacity import stage as capacity
    from pipeline.config.diagnosis import DiagnoseConfig
    from pipeline.config.pattern import PatternCapacityConfig
    from pipeline.config.studies import CapacityConfig
    from pipeline.diagnose import stage as diagnose

    quiet = lambda s: None  # noqa: E731
    run = capacity.run(CapacityConfig(filters=(2, 3), kernel_sizes=(5,), seeds=8, epochs=200, test_n=50), echo=quiet)
    diagnose.run(DiagnoseConfig(capacity_run=run.run_id, pairs=2, slice_points=7, long_factor=2), echo=quiet)
    replication.run(PatternCapacityConfig(filters=(1, 2), seeds=6, steps=30, test_pairs=30), echo=quiet)
    nb = execute("05-minima.ipynb", tmp_path)
    text = outputs_text(nb)
    assert '"error"' not in text
    assert text.count("image/png") >= 7  # verdicts, eigenvalues, classes, tickets, paths, slice, the published task
    assert "long run:" in text and "paths; barrier above delta" in text


def test_04_image_capacity(tracking_uri, tmp_path):
    from pipeline.capacity import stage as capacity
    from pipeline.config.studies import CapacityConfig

    capacity.run(CapacityConfig(dataset="digits", filters=(1, 4), kernel_sizes=(3, 5), seeds=4, epochs=3,
                                max_batches=8), echo=lambda s: None)
    nb = execute("04-image-capacity.ipynb", tmp_path)
    text = outputs_text(nb)
    assert text.count("image/png") >= 4  # heatmap, capacity curve, learning curves, spread
    assert "k = 3: F = 1:" in text and "intervals" in text
    assert '"error"' not in text
