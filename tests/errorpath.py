"""The error path's test table: cases of careless and hostile input, run in-process (the default
suite) or as real processes (``@slow``), each checked the same way.

A case is a command line (with ``{placeholders}`` filled from the ``World``), its expected exit
status and a word of its one error line. ``check`` asserts what the issue asks of every case:
the exit status, at most one line on stderr (MLflow's own INFO log lines aside), no
``Traceback``, no run left RUNNING, and that the runs and studies written before the case are
unchanged, byte for byte (status, times, params, tags, metric histories, artifact files;
study attributes and trials).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import REPO

MLFLOW_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING) ")  # MLflow's logging, not an error
PROGRESS = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")  # a tqdm progress bar (redrawn in place on a terminal)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int  # expected exit status
    needle: str = ""  # a word of the error line ("" for success)
    env: tuple[tuple[str, str], ...] = ()

    def filled(self, world: "World") -> tuple[list[str], dict[str, str]]:
        values = world.values()
        return [a.format(**values) for a in self.args], {k: v.format(**values) for k, v in self.env}


def case(id: str, *args: str, code: int = 2, needle: str = "", env: dict[str, str] | None = None) -> Case:
    return Case(id, tuple(args), code, needle, tuple((env or {}).items()))


@dataclasses.dataclass
class World:
    """Stores written before the cases: an MLflow store with prepare-data, train, a sweep and runs in
    every final state, and an Optuna study; all of which the cases must leave unchanged."""

    root: Path
    run_ids: dict[str, str]
    studies: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    def values(self) -> dict[str, str]:
        return {"root": str(self.root), "uri": self.uri, "storage": self.storage, **self.run_ids}


def build_world(root: Path) -> World:
    """Write the world with the stages themselves (MLflow's global state is restored afterwards)."""
    import mlflow

    from pipeline.config.stages import PrepareDataConfig, TrainConfig
    from pipeline.config.studies import SweepConfig
    from pipeline.data import prepare
    from pipeline.sweep import stage as sweep
    from pipeline.train import stage as train

    root.mkdir(parents=True, exist_ok=True)
    uri, quiet = f"sqlite:///{root / 'mlflow.db'}", (lambda s: None)
    saved_uri, saved_cwd, saved_env = mlflow.get_tracking_uri(), os.getcwd(), dict(os.environ)
    os.environ.clear()
    os.environ.update(_clean_env(saved_env))
    os.chdir(root)
    try:
        prepared = prepare.run(PrepareDataConfig(n=30, data_seed=7, tracking_uri=uri), echo=quiet)
        trained = train.run(TrainConfig(epochs=5, image_every=5, tracking_uri=uri), echo=quiet)
        sweep.run(SweepConfig(study_name="known", storage=f"sqlite:///{root / 'optuna.db'}", tracking_uri=uri,
                              seeds=4, epochs=20, n_trials=1, filters=(1, 2, 3), kernel_sizes=(3, 5),
                              worker_index=0, progress=False), echo=quiet)
        client = mlflow.MlflowClient(uri)
        ids = {"prepare_run": prepared.run_id, "train_run": trained.run_id, "data_uri": prepared.data_uri}
        for state in ("FAILED", "KILLED", "FINISHED"):
            run = client.create_run("0", run_name=state.lower())
            client.log_param(run.info.run_id, "p", "1")
            client.set_terminated(run.info.run_id, state)
            ids[state.lower() + "_run"] = run.info.run_id
        client.delete_run(ids["finished_run"])
        ids["deleted_run"] = ids.pop("finished_run")
        client.delete_experiment(client.create_experiment("gone"))
        (root / "not-npz.npz").write_text("not an npz file")
    finally:
        mlflow.set_tracking_uri(saved_uri)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return World(root, ids, ("known",))


def _clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the variables that point a command at other stores or runs."""
    env = dict(os.environ if env is None else env)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "OPTUNA_STORAGE", "PIPELINE_DEBUG"):
        env.pop(key, None)
    return env


# --------------------------------------------------------------------------- snapshots
def _hash_tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot(world: World) -> dict[str, Any]:
    """Everything the world's runs and studies hold, to compare byte for byte."""
    import mlflow
    import optuna
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(world.uri)
    exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = {}
    wanted = {v for k, v in world.run_ids.items() if k.endswith("_run")}
    for r in client.search_runs(exps, run_view_type=ViewType.ALL, max_results=5000):
        if r.info.run_id not in wanted and r.data.tags.get("study_name") not in world.studies:
            continue
        metrics = {k: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(r.info.run_id, k)]
                   for k in sorted(r.data.metrics)}
        runs[r.info.run_id] = (r.info.status, r.info.start_time, r.info.end_time, r.info.lifecycle_stage,
                               r.data.params, r.data.tags, metrics,
                               _hash_tree(Path(r.info.artifact_uri.removeprefix("file://"))))
    studies = {}
    for name in world.studies:
        study = optuna.load_study(study_name=name, storage=world.storage)
        studies[name] = (study.user_attrs, [(t.number, t.state.name, t.params, t.values, t.user_attrs,
                                             t.system_attrs, t.intermediate_values, t.datetime_complete)
                                            for t in study.trials])
    return {"runs": runs, "studies": studies}


def running_runs(uri: str) -> list[str]:
    """The runs left RUNNING, each as its id, name and experiment (which stage left it, in a failure's message)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    return [f"{r.info.run_id} ({r.info.run_name!r} in experiment {names[r.info.experiment_id]!r})"
            for r in client.search_runs(list(names), max_results=5000) if r.info.status == "RUNNING"]


# --------------------------------------------------------------------------- running a case
def error_lines(err: str) -> list[str]:
    """The lines of stderr that are not MLflow's own INFO logs or a progress bar."""
    lines = [ln.split("\r")[-1] for ln in err.splitlines()]
    return [ln for ln in lines if ln.strip() and not MLFLOW_LOG.match(ln) and not PROGRESS.search(ln)]


def run_in_process(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``pipeline.cli.main(args)`` in this process, with ``env`` and ``cwd``; (status, stdout, stderr)."""
    import mlflow

    from pipeline.cli import main
    from pipeline.tracking import compat, faults

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update({**_clean_env(saved_env), **env})
    os.chdir(cwd)
    faults.reset_lost()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _mlflow_logs_to(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        compat.forget_active_experiment()  # --experiment-name: one process's choice
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _mlflow_logs_to(stream: io.StringIO):
    """Library log handlers hold the real stderr: point them at the captured one for the case."""
    import logging

    handlers = [h for name in ("mlflow", "optuna", "") for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.__stderr__,)]
    for h in handlers:
        h.setStream(stream)
    try:
        yield
    finally:
        for h in handlers:
            h.setStream(sys.__stderr__)


def run_subprocess(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> tuple[int, str, str]:
    """``python -m pipeline ARGS`` as a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd,
                          env={**_clean_env(), "PYTHONPATH": str(REPO), **env}, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def run_forked(jobs: list[tuple[list[str], dict[str, str]]], cwd: Path, parallel: int = 2,
               timeout: int = 900) -> list[tuple[int, str, str]]:
    """Each job as a real process of its own (its exit status, its stdout and stderr file
    descriptors, its signal handlers, its exit handlers), forked from one process that has
    imported the pipeline's libraries once: a fresh interpreter per case would spend ~3 s of
    CPU each on imports. What that one process prints while importing must be nothing."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_text(json.dumps([{"args": a, "env": {**_clean_env(), **e}, "out": f"{tmp}/{i}.out",
                                     "err": f"{tmp}/{i}.err"} for i, (a, e) in enumerate(jobs)]))
        proc = subprocess.run([sys.executable, "-c", _FORK_SERVER, str(spec), str(cwd), str(parallel)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**_clean_env(), "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr[-3000:]
        codes = json.loads(proc.stdout)
        return [(codes[i], Path(f"{tmp}/{i}.out").read_text(), Path(f"{tmp}/{i}.err").read_text())
                for i in range(len(jobs))]


_FORK_SERVER = """
import atexit, json, os, sys
import click, matplotlib, mlflow, optuna, pandas, scipy.stats, sqlalchemy, torch  # what the stages import
import pipeline.cli
jobs, cwd, parallel = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
codes, running = {}, {}
for i, job in enumerate(jobs):
    while len(running) >= parallel:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    pid = os.fork()
    if pid == 0:  # the case's own process
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(job["env"])
        for fd, path in ((1, job["out"]), (2, job["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        code = 0
        try:
            pipeline.cli.main(job["args"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        atexit._run_exitfuncs()  # what exit runs (mlflow ends runs there), without tearing the modules down
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = i
while running:
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""


def check(c: Case, result: tuple[int, str, str], world: World, before: dict[str, Any]) -> None:
    code, out, err = result
    lines = error_lines(err)
    assert code == c.code, f"{c.id}: exit {code}, expected {c.code}\n{err[-2000:]}"
    assert "Traceback" not in err, f"{c.id}: {err[-3000:]}"
    assert len(lines) <= 1, f"{c.id}: {len(lines)} lines on stderr:\n" + "\n".join(lines[-10:])
    if c.code:
        assert lines and lines[0].startswith("Error: ") and c.needle in lines[0], f"{c.id}: {lines}"
    assert not running_runs(world.uri), f"{c.id}: left runs RUNNING"
    assert snapshot(world) == before, f"{c.id}: changed runs or studies written before it"


def run_case(c: Case, error_world: tuple[World, dict[str, Any]]) -> tuple[int, str, str]:
    """One case in-process, tracking to the world's store, checked."""
    world, before = error_world
    args, env = c.filled(world)
    result = run_in_process(args, {"MLFLOW_TRACKING_URI": world.uri, **env}, world.root)
    check(c, result, world, before)
    return result


def run_table_as_processes(cases: list[Case], error_world: tuple[World, dict[str, Any]]
                           ) -> list[tuple[int, str, str]]:
    """Every case as a real process of its own (``run_forked``), each checked as in-process."""
    world, _ = error_world
    before = snapshot(world)
    jobs = [c.filled(world) for c in cases]
    results = run_forked([(args, {"MLFLOW_TRACKING_URI": world.uri, **env}) for args, env in jobs], world.root)
    for c, result in zip(cases, results):
        check(c, result, world, before)
    return results
