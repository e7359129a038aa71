"""Every command in the README and the docs/ pages is run: here, or (the `ci` block) by .ci/run.

Each ```bash block of README.md and docs/*.md is tagged with the way it is checked
(``<!-- readme-test: KIND -->``): ``run`` blocks run line by line in a scratch directory,
with ``<... run id>`` placeholders filled from the store; ``distributed`` runs whole
against a PostgreSQL server on 127.0.0.1; ``env-managers`` runs each line whose
environment manager is installed; ``ci`` lines must be in .ci/run; ``serve`` (`make serve`,
then `curl`) runs in tests/tracking/test_serving.py.

A README line whose comment says ``needs internet`` (``pipeline train ... --download  # needs
internet``) is the one exception: it is left out of its block's run and checked on its own,
which skips it, with that reason, where the internet cannot be reached. Every other line must
succeed.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, free_port, wait_for_url

sys.path.insert(0, str(REPO / "docs"))
from doc_blocks import pages  # noqa: E402  (docs/ is not a package)

PAGES = {page.relative_to(REPO).as_posix(): page.read_text() for page in pages(REPO)}  # README.md first
BLOCK = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```bash\n(.*?)```", re.S)
BIN = Path(sys.executable).parent


NEEDS_INTERNET = re.compile(r"\s{2,}#.*\bneeds internet\b")  # the pages' mark on a line that downloads


def blocks(kind: str, internet: bool | None = None) -> list[str]:
    """The commands of every ``kind`` block (README.md first, then docs/ in the README's order), comments
    dropped; ``internet`` True/False keeps only the lines marked as needing the internet / only the others."""
    out = []
    for k, body in (found for text in PAGES.values() for found in BLOCK.findall(text)):
        if k == kind:
            out += [re.sub(r"\s{2,}#.*$", "", ln).strip() for ln in body.splitlines()
                    if ln.strip() and not ln.strip().startswith("#")
                    and internet in (None, bool(NEEDS_INTERNET.search(ln)))]
    return out


def online() -> bool:
    """Whether the hosts that torchvision downloads MNIST, FashionMNIST and CIFAR-10 from answer within 5 s
    (the README's `needs internet` lines are `--download`s of those)."""
    import socket
    from urllib.parse import urlsplit

    from torchvision import datasets

    urls = [datasets.MNIST.mirrors[0], datasets.FashionMNIST.mirrors[0], datasets.CIFAR10.url]
    try:
        for url in urls:
            parts = urlsplit(url)
            socket.create_connection((parts.hostname, parts.port or {"https": 443}.get(parts.scheme, 80)),
                                     timeout=5).close()
        return True
    except OSError:
        return False


def _env(tmp_path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # servers started here need no GenAI job runners
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "OPTUNA_STORAGE"):
        env.pop(key, None)
    return env


@pytest.mark.parametrize("page", PAGES)
def test_every_bash_block_is_tagged(page):
    assert PAGES[page].count("```bash") == len(BLOCK.findall(PAGES[page]))


def test_the_blocks_come_from_every_page_in_order():
    """The README's stage commands first (they make the runs that later `<... run id>` stand for), then the pages'."""
    assert list(PAGES)[0] == "README.md" and len(PAGES) >= 8
    run = blocks("run")
    assert run[0].startswith("pipeline prepare-data") and "pipeline capacity --table capacity.csv" in run
    placed = {line: i for i, line in enumerate(run)}
    diagnose = next(i for line, i in placed.items() if line.startswith("pipeline diagnose"))
    assert placed["pipeline capacity --table capacity.csv"] < diagnose  # the grid it diagnoses is a 1D one
    images = [i for line, i in placed.items() if line.startswith("pipeline capacity --dataset")]
    assert images and min(images) > diagnose  # so `<capacity run id>` is not an image grid's
    assert len(blocks("serve")) == 2 and len(blocks("env-managers")) == 3 and blocks("distributed")


def test_ci_block_is_run_by_ci():
    ci = (REPO / ".ci" / "run").read_text()
    lines = blocks("ci")
    assert lines == ["make run", "make test"]
    for line in lines:
        assert re.search(rf"^{re.escape(line)}$", ci, re.M), f".ci/run does not run `{line}`"


def _latest(work: Path, stage: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.stage = '{stage}'", order_by=["attributes.start_time DESC"])
    return next(r for r in runs if "mlflow.parentRunId" not in r.data.tags).info.run_id  # a study's parent run


SERVERS = ("mlflow ui", "optuna-dashboard")  # `run` lines that start a server: started, checked, stopped


def _serve(cmd: str, work: Path, env) -> None:
    """`mlflow ui`, `optuna-dashboard`: start it on a free port, check that it answers, stop it."""
    port = free_port()
    path = "/health" if cmd.startswith("mlflow") else "/"
    proc = subprocess.Popen([*cmd.split(), "--port", str(port), "--host", "127.0.0.1"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}{path}", proc, what=f"`{cmd}`")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_run_blocks(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)  # so that ../shared/data/mnist resolves as in the README
    env = _env(tmp_path)
    skipped = []
    for line in blocks("run", internet=False):
        cmd = line
        if "<prepare run id>" in cmd:
            cmd = cmd.replace("<prepare run id>", _latest(work, "prepare-data"))
        if "<train run id>" in cmd:
            cmd = cmd.replace("<train run id>", _latest(work, "train"))
        if "<capacity run id>" in cmd:
            cmd = cmd.replace("<capacity run id>", _latest(work, "capacity"))
        cmd = cmd.replace("mlflow run . ", f"mlflow run {REPO} ")
        if cmd.startswith(SERVERS):
            _serve(cmd, work, env)
            continue
        if "../shared/data/mnist" in cmd and not (tmp_path / "shared" / "data" / "mnist").is_dir():
            skipped.append(line)
            continue
        proc = subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"`{line}` failed:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, line
    assert (work / "capacity.csv").is_file()
    assert not skipped or not shared.is_dir(), skipped


def test_the_internet_mark_is_read():
    assert blocks("run", internet=True) == ["pipeline train --recipe fashion-lenet --data-dir data --download"]
    everything = blocks("run")
    assert sorted(blocks("run", internet=False) + blocks("run", internet=True)) == sorted(everything)


@pytest.mark.slow
@pytest.mark.parametrize("line", blocks("run", internet=True))
def test_lines_that_need_the_internet(line, tmp_path):
    if not online():
        pytest.skip(f"the README marks `{line}` as needing the internet, and it cannot be reached from here")
    proc = subprocess.run(line, shell=True, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, f"`{line}` failed:\n{proc.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("line", blocks("env-managers"))
def test_env_manager_lines(line, tmp_path):
    manager = line.split("--env-manager")[1].split()[0]
    if manager == "local":  # the main job: `make run` runs exactly this, and .ci/run runs `make run`
        assert line in (REPO / "Makefile").read_text()
        return
    if shutil.which(manager) is None:
        pytest.skip(f"`{manager}` is not installed here, so `mlflow run . --env-manager {manager}` cannot run")
    env = {**_env(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    # `mlflow run` runs main in the project folder: its Optuna storage goes to tmp_path, not into the repository
    cmd = line.split("#")[0].replace("mlflow run . ", f"mlflow run {REPO} ")
    cmd += f" -P storage=sqlite:///{tmp_path / 'optuna.db'}"
    proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.postgres
def test_distributed_block(postgres_server, tmp_path):
    import uuid

    import psycopg

    dbs = {}
    with psycopg.connect(postgres_server, autocommit=True) as con:
        for role in ("optuna", "mlflow"):
            dbs[role] = f"{role}_{uuid.uuid4().hex[:8]}"
            con.execute(f"CREATE DATABASE {dbs[role]}")
    base = postgres_server.rsplit("/", 1)[0]
    user_password, host = base.split("://", 1)[1].split("@", 1)
    user, password = user_password.split(":", 1)
    port = free_port()
    script = "\n".join(blocks("distributed"))  # the password comes from PGPASSWORD, never from a URL
    script = (script.replace("PGPASSWORD=secret", f"PGPASSWORD={password}")
                    .replace("postgresql://optuna@db-host:5432/optuna", f"postgresql://{user}@{host}/{dbs['optuna']}")
                    .replace("postgresql://mlflow@db-host:5432/mlflow", f"postgresql://{user}@{host}/{dbs['mlflow']}")
                    .replace("--host 0.0.0.0 --port 5000", f"--host 127.0.0.1 --port {port}")
                    .replace("mlflow-host:5000", f"127.0.0.1:{port}"))
    assert "db-host" not in script and "mlflow-host" not in script and f":{password}@" not in script
    proc = subprocess.Popen(["bash", "-c", "set -e\n" + script], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the mlflow server that the block started
            try:
                os.killpg(proc.pid, sig)
                time.sleep(2)
            except ProcessLookupError:
                break
    assert proc.returncode == 0, err[-3000:]
    summary = [line for line in out.splitlines() if line.startswith("study 'capacity-pg'")][-1]  # study-summary's
    finished = {state: int(n) for n, state in re.findall(r"(\d+) (complete|pruned)\b", summary)}
    assert sum(finished.values()) == 20 and finished.get("complete", 0) >= 5, out[-2000:]  # the median pruner
    assert out.count("COMPLETE") + out.count("PRUNED") >= 20  # may stop weak trials after its 5 startup trials
    assert password not in out + err
