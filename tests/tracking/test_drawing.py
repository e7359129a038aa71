"""Figures drawn by the helper process: logged to the run before it ends, in order; a failure fails the run."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pipeline.tracking import runs
from pipeline.tracking.drawing import Drawing, DrawingError
from pipeline.tracking.links import results_line


def test_figures_and_images_are_logged_before_the_run_ends(client):
    w = np.linspace(-1, 1, 3 * 5, dtype=np.float32).reshape(3, 1, 5)
    with runs.stage_run("test") as run, Drawing() as drawing:
        drawing.image("filters", 0, "pipeline.tracking.figures:filter_grid_rgb", w)
        drawing.image("filters", 7, "pipeline.tracking.figures:filter_grid_rgb", -w)
        drawing.figure("figures/curves.png", "pipeline.tracking.figures:learning_curves", [1.0, 0.5], [1.1, 0.6], [0.5, 0.9],
                       [0.4, 0.8])
        drawing.log_ready()  # whatever is drawn already; never waits
    run_id = run.info.run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    (curves,) = [a.path for a in client.list_artifacts(run_id, "figures")]
    png = Image.open(client.download_artifacts(run_id, curves))
    assert curves == "figures/curves.png" and png.size[0] > 500
    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == [0, 7]
    from pipeline.tracking.figures import filter_grid_rgb

    first = [p for p in images if "+step+0+" in p][0]
    assert np.array_equal(np.asarray(Image.open(client.download_artifacts(run_id, first)).convert("RGB")),
                          filter_grid_rgb(w))  # drawn in the helper exactly as in this process


def test_a_failing_figure_fails_the_run_with_the_helpers_traceback(client):
    with pytest.raises(DrawingError, match="AttributeError.*no_such_figure") as err:
        with runs.stage_run("test") as run, Drawing() as drawing:
            drawing.figure("figures/bad.png", "pipeline.tracking.figures:no_such_figure", 1)
    assert "Traceback" in str(err.value)
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    with runs.stage_run("test"), Drawing() as drawing:  # the helper still serves the next stage
        drawing.image("filters", 1, "pipeline.tracking.figures:filter_grid_rgb", np.ones((2, 1, 3), np.float32))


def test_results_line_names_the_run_and_its_page(client, tracking_uri):
    with runs.stage_run("test", run_name="train F4 k5 s0") as run:
        pass
    line = results_line(run.info.run_id)
    assert line == (f"results: run 'train F4 k5 s0' {run.info.run_id} at http://127.0.0.1:5000/#/experiments/"
                    f"{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning (after: mlflow ui "
                    f"--backend-store-uri {tracking_uri})")


def test_a_helper_that_dies_fails_what_it_was_drawing_and_is_replaced(client):
    from pipeline.tracking import drawing

    with pytest.raises(DrawingError, match="helper exited"):
        with runs.stage_run("test"), Drawing() as d:
            d.figure("figures/never.png", "time:sleep", 30)
            drawing._helper().proc.kill()
    with runs.stage_run("test") as run, Drawing() as d:
        d.image("filters", 2, "pipeline.tracking.figures:filter_grid_rgb", np.ones((2, 1, 3), np.float32))
    assert [a.path for a in client.list_artifacts(run.info.run_id, "images")]


def test_arguments_that_cannot_be_sent_fail_the_caller_at_once(client):
    with runs.stage_run("test"), Drawing() as d:
        with pytest.raises(Exception, match="pickle"):
            d.figure("figures/bad.png", "pipeline.tracking.figures:learning_curves", lambda: None)


@pytest.mark.slow
def test_the_stages_of_main_never_load_matplotlib_themselves(tmp_path):
    """Every figure of `pipeline main` (its stages', its closing sweep's Optuna plots and its front page's) is drawn
    by the helper process: the stages' process never imports matplotlib (about 0.6 s, and drawing besides), nor
    Optuna's plots and scikit-learn (about 1.5 s). A fresh interpreter, to see it."""
    import subprocess
    import sys

    from helpers import REPO

    heavy = "sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'sklearn') or m.startswith(" \
            "('optuna.visualization', 'optuna.importance', 'pipeline.sweep.plots', 'pipeline.tracking.figures')))"
    code = (f"import atexit, sys; atexit.register(lambda: print('heavy modules loaded:', {heavy})); "
            "from pipeline.cli import main; main()")
    args = ["main", "--epochs", "20", "--sweep-trials", "3", "--sweep-seeds", "5", "--capacity-seeds", "5",
            "--storage", f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "heavy modules loaded: []" in proc.stdout, proc.stdout[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr  # the helper's too: every warning of the sweep's plots is named
    assert (tmp_path / "mlflow.db").is_file()
