"""The MLflow UI in a real browser (Chromium, driven by Playwright) on the store of a fast
`pipeline main`: the experiment page lists the runs by their names, a train run shows the
filter image card with its step slider, the parent run shows its description, the Models tab shows
each model's test accuracy, and an image train run's System metrics tab shows CPU and memory charts.

Screenshots go to $PIPELINE_SCREENSHOTS (else the test's temporary folder); the README and
docs show four of them (docs/images/runs_table.png, filter_slider.png, models_tab.png, system_metrics.png). With $PIPELINE_BROWSER_STORE
(a folder with the mlflow.db of, say, `make run`) the test looks at that store instead of
making one. Playwright cannot download its own browser here: it drives Debian's Chromium.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, free_port, wait_for_url

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
FAST_MAIN = ["--epochs", "60", "--sweep-trials", "4", "--sweep-seeds", "8", "--capacity-seeds", "3"]
# an image train whose System metrics tab has charts: sampled 5 times a second here (the stages keep MLflow's
# default, once per 10 s, and this train takes about 3 s), so that the charts have points
DIGITS_TRAIN = ["train", "--dataset", "digits", "--epochs", "30", "--experiment-name", "convnet-study"]
ML_VIEW = "workflowType=machine_learning"  # MLflow 3.17 opens experiments in its GenAI view otherwise
TIMEOUT_MS = 60_000


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("needs the playwright package (pip install playwright; it is in the dev extra)")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PIPELINE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(base URL of `mlflow ui`, experiment id, {run name: run id}) on the store of a fast `pipeline main`."""
    _require_browser()
    import mlflow

    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(var, None)
    store = os.environ.get("PIPELINE_BROWSER_STORE")
    work = Path(store).resolve() if store else tmp_path_factory.mktemp("ui")
    if not store:
        for args, extra in ((["main", *FAST_MAIN], {}), (DIGITS_TRAIN, {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2"})):
            made = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=work, env={**env, **extra},
                                  capture_output=True, text=True, timeout=900)
            assert made.returncode == 0, made.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convnet-study")
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment.experiment_id], max_results=5000)}
    port = free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    server = subprocess.Popen([mlflow_bin, "ui", "--backend-store-uri", "sqlite:///mlflow.db", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], cwd=work, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{base}/health", server, what="`mlflow ui`")
        yield base, experiment.experiment_id, runs
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        yield tab
        browser.close()


def _open(page, url: str) -> None:
    """Go to ``url`` and close the assistant panel that takes a third of the page."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Model training", exact=True).first.wait_for()
    close = page.get_by_role("button", name="Close")
    try:
        close.first.click(timeout=5000)
    except Exception:  # noqa: BLE001 - no assistant panel in this MLflow build
        pass


def test_the_experiment_page_lists_the_runs_by_their_names(ui, page, shots):
    base, experiment_id, runs = ui
    main_name = next(name for name in runs if name.startswith("main "))
    _open(page, f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}")
    row = page.get_by_role("row").filter(has_text=main_name)
    row.wait_for()
    row.get_by_role("button").first.click()  # expand the parent: its runs appear beneath it
    grid = next(name for name in runs if name.startswith("capacity ") and "×" in name)
    sweep = next(name for name in runs if name.startswith("sweep "))
    for name in ("train F3 k5 s0", "train F4 k5 s0", "evaluate F4 k5 s0", "prepare-data synthetic", grid, sweep):
        page.get_by_text(name, exact=True).first.wait_for()
    header = page.locator(".ag-header-cell").filter(has_text="Run Name").first
    box = header.bounding_box()  # widen the name column (drag its right edge) so that nested names show whole
    x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 90, y, steps=8)
    page.mouse.up()
    page.screenshot(path=shots / "runs_table.png")


def _step_images(base: str, run_id: str, key: str) -> dict[bytes, int]:
    """The step of each picture that ``mlflow.log_image(key=..., step=...)`` logged (the full image and MLflow's
    thumbnail), by its bytes: read through the UI server's REST API."""
    import json
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run_id}&path=images",
                                timeout=30) as reply:
        files = [f["path"] for f in json.load(reply).get("files", [])]
    steps = {}
    for path in files:
        found = re.match(rf"images/{key}\+step\+(\d+)\+", path)
        if found:
            query = urllib.parse.urlencode({"path": path, "run_uuid": run_id})
            with urllib.request.urlopen(f"{base}/get-artifact?{query}", timeout=30) as reply:
                steps[reply.read()] = int(found.group(1))
    return steps


def _shown_step(image, steps: dict[bytes, int], want: int) -> int | None:
    """The step whose picture ``image`` shows (its bytes, as the page has them: an http or a blob: URL, which
    MLflow 3.18 uses), polled until it is ``want`` or the timeout passes."""
    shown = None
    for _ in range(TIMEOUT_MS // 250):
        data = image.evaluate("async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))")
        shown = steps.get(bytes(data))
        if shown == want:
            break
        image.page.wait_for_timeout(250)
    return shown


def test_a_train_run_shows_the_filter_image_card_with_a_step_slider(ui, page, shots):
    from playwright.sync_api import expect

    base, experiment_id, runs = ui
    run_id = runs["train F4 k5 s0"]
    steps = _step_images(base, run_id, "filters")
    _open(page, f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{ML_VIEW}")
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]').filter(
        has=page.locator('h4[title="filters"]'))
    card.wait_for()
    image = card.locator("img").first
    assert _shown_step(image, steps, 0) == 0
    slider = card.get_by_role("slider")
    last = int(slider.get_attribute("aria-valuemax"))
    assert last > 0 and last in steps.values()
    step = card.locator('input[type="number"]')
    step.fill(str(last))  # the last epoch: the trained filters
    step.blur()  # the step box takes its value when it loses focus
    expect(slider).to_have_attribute("aria-valuenow", str(last))
    assert _shown_step(image, steps, last) == last
    page.wait_for_timeout(1500)
    card.scroll_into_view_if_needed()
    card.screenshot(path=shots / "filter_card.png")
    image.click()  # the card shows MLflow's 256 px thumbnail; a click opens the full picture
    preview = page.locator(".rc-image-preview-img")
    preview.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "filter_slider.png")
    page.keyboard.press("Escape")


def test_the_parent_run_shows_its_description(ui, page, shots):
    base, experiment_id, runs = ui
    main_name = next(name for name in runs if name.startswith("main "))
    _open(page, f"{base}/#/experiments/{experiment_id}/runs/{runs[main_name]}?{ML_VIEW}")
    page.get_by_text("Does the lab's tiny ConvNet get stuck?").first.wait_for()
    assert page.get_by_text("Optuna sweep").count() >= 1
    page.screenshot(path=shots / "parent_run.png", full_page=True)



def _metric(base: str, run_id: str, key: str) -> float:
    """A run's metric, read through the UI server's REST API."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=30) as reply:
        metrics = json.load(reply)["run"]["data"]["metrics"]
    return next(m["value"] for m in metrics if m["key"] == key)


def test_the_models_tab_shows_each_models_test_accuracy(ui, page, shots):
    """evaluate links test_accuracy to the model it evaluated: the Models tab compares the trained models by it
    (the attribute columns that say nothing here are hidden)."""
    base, experiment_id, runs = ui
    page.set_viewport_size({"width": 1800, "height": 600})
    _open(page, f"{base}/#/experiments/{experiment_id}/models?{ML_VIEW}")
    page.get_by_role("button", name="Columns").click()
    for column in ("Status", "Logged from", "Registered models", "Dataset"):
        page.get_by_text(column, exact=True).last.click()
    page.keyboard.press("Escape")
    header = page.locator(".ag-header-cell").filter(has_text="test_accuracy").first
    header.wait_for()
    column = header.get_attribute("aria-colindex")
    for f in (3, 4):
        accuracy = _metric(base, runs[f"evaluate F{f} k5 s0"], "test_accuracy")
        row = page.get_by_role("row").filter(has_text=f"train F{f} k5 s0").first  # the model's metrics
        shown = row.locator(f'.ag-cell[aria-colindex="{column}"]').inner_text()
        assert float(shown) == pytest.approx(accuracy, rel=1e-6), (f, shown, accuracy)
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "models_tab.png")
    page.set_viewport_size({"width": 1400, "height": 900})


def test_an_image_train_run_shows_cpu_and_memory_charts(ui, page, shots):
    base, experiment_id, runs = ui
    run_id = next(run_id for name, run_id in runs.items() if name.startswith("train digits "))
    page.set_viewport_size({"width": 1400, "height": 1250})  # every chart of the tab (8, three rows) in view
    _open(page, f"{base}/#/experiments/{experiment_id}/runs/{run_id}/system-metrics?{ML_VIEW}")
    for chart in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):  # the charts' titles
        page.get_by_text(chart, exact=True).first.wait_for()
    page.wait_for_timeout(2000)
    page.screenshot(path=shots / "system_metrics.png")
    page.set_viewport_size({"width": 1400, "height": 900})
