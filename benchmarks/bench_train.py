"""One everyday `pipeline train` as a whole process, against what it cannot avoid.

    python benchmarks/bench_train.py                 # 3 repeats of each, then `mlflow run .` 3 times (the median)
    python benchmarks/bench_train.py --quick         # 1 repeat, 100 epochs, no `mlflow run .`

Measured in the same run, as fresh processes, on one SQLite store in a temporary folder:
- floor:     ``python -c "import torch, mlflow"``, what any tracked torch run pays;
- train:     ``python -m pipeline train --filters 4 --seed 0`` (synthetic, 500 epochs), as a user runs it;
- phases:    the same command, in-process through ``pipeline.cli.main``, with each phase timed:
             imports (time inside import statements, wherever they happen), data (``load_data``),
             fit (``fit``: the training loop with its per-epoch tracking), model logging
             (``artifacts.log_model``, or its wait where it runs beside other work), tracking
             (the rest of the process: store, run, params, figures, metrics, closing the run) and
             startup/exit (the interpreter, and what runs after ``main`` returns);
- untracked: the same training loop (``fit``, same data and model) in a process without MLflow;
- tricks:    the instrumented `pipeline train` again with each process-wide trick taken away in turn:
             the frozen garbage collector (``cli.stage_imports``), the drawing helper process
             (``tracking/drawing.py``: figures drawn inline instead) and the hand-written SGD
             (``train/sgd.py``: ``torch.optim.SGD`` instead). What each saves is the difference in
             wall time against the instrumented run, in ms and as a ratio.
Each is repeated ``--repeats`` times, interleaved, and the median is reported: the machine is
shared and noisy. Targets: train <= 1.5x the floor; the tracked loop <= 1.10x the untracked
one. Last, ``mlflow run . --env-manager local`` (entry point ``main``) end to end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["train", "--filters", "4", "--seed", "0"]
TARGET_FLOOR, TARGET_LOOP = 1.5, 1.10
TARGET_MLFLOW_RUN = 20.0  # seconds for `mlflow run .` (the main job), end to end
PHASES = ("imports", "data", "fit", "tracking", "model logging", "startup/exit")
# the process-wide tricks of `pipeline train`, each taken away in one variant of the instrumented child
TRICKS = {"frozen GC": "no-gc-freeze", "drawing helper process": "inline-drawing",
          "hand-written SGD": "torch-sgd"}


# ----------------------------------------------------------------------------- child processes
class ImportClock:
    """Seconds spent inside (outermost) import statements, so that phases can exclude them."""

    def __init__(self) -> None:
        import builtins
        import threading

        self.total, self.cpu, self._depth, self._orig = 0.0, 0.0, 0, builtins.__import__
        self._main = threading.get_ident()
        self._thread = threading.get_ident
        builtins.__import__ = self._import

    def _import(self, *args, **kwargs):
        if self._depth or self._thread() != self._main:  # the main thread's outermost imports only
            return self._orig(*args, **kwargs)
        self._depth, t0, c0 = 1, time.perf_counter(), time.thread_time()
        try:
            return self._orig(*args, **kwargs)
        finally:
            self._depth = 0
            self.total += time.perf_counter() - t0
            self.cpu += time.thread_time() - c0


def timed(clock: ImportClock, phases: dict[str, float], name: str, fn):
    """``fn`` wrapped so that its time, less the imports inside it, adds to ``phases[name]``; and its
    CPU time in this thread (what the phase itself costs, whatever else runs), also less imports,
    to ``phases[name + " cpu"]``."""

    def wrapper(*args, **kwargs):
        t0, c0, i0, ic0 = time.perf_counter(), time.thread_time(), clock.total, clock.cpu
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0 - (clock.total - i0)
            phases[name + " cpu"] = phases.get(name + " cpu", 0.0) + time.thread_time() - c0 - (clock.cpu - ic0)

    return wrapper


def without(trick: str | None) -> None:
    """Take one process-wide trick away from this process (``TRICKS``' values), before the stage runs."""
    if trick == "no-gc-freeze":
        import gc

        gc.freeze = lambda: None  # the collector stays on and scans everything, as in a plain Python program
        gc.disable = lambda: None
    elif trick == "inline-drawing":
        from concurrent.futures import Future

        from pipeline.tracking import drawing

        class Inline:
            """Draws each figure at once, in this process (matplotlib loaded here, on the first figure)."""

            def submit(self, as_png, draw, args, kwargs):
                future = Future()
                future.set_result((drawing._png if as_png else drawing._call)(draw, args, kwargs))
                return future

        inline = Inline()
        drawing._helper = lambda: inline
    elif trick == "torch-sgd":
        import torch

        from pipeline.train import loop

        loop.SGD = torch.optim.SGD  # make_optimizer's CPU branch: the same arguments


def child_tracked(epochs: int, trick: str | None = None) -> dict[str, float]:
    """`pipeline train` in this process, through the CLI, with its phases timed (less ``trick``)."""
    t_start, clock, phases = time.perf_counter(), ImportClock(), {}
    from pipeline import cli
    from pipeline.tracking import artifacts
    from pipeline.train import stage

    without(trick)

    stage.load_data = timed(clock, phases, "data", stage.load_data)
    stage.fit = timed(clock, phases, "fit", stage.fit)
    artifacts.log_model = timed(clock, phases, "model logging", artifacts.log_model)
    sys.argv = ["pipeline", *TRAIN_ARGS, "--epochs", str(epochs)]
    try:
        cli.main()  # as the console script calls it
    except SystemExit as exc:  # click's standalone exit after the command
        if exc.code:
            raise
    phases["imports"], phases["imports cpu"] = clock.total, clock.cpu
    phases["in_process"] = time.perf_counter() - t_start
    # the rest of the process's own time: store, run, params, figures, metrics, closing the run
    for suffix, total in (("", phases["in_process"]), (" cpu", time.thread_time())):
        phases["tracking" + suffix] = total - sum(phases.get(k + suffix, 0.0)
                                                  for k in ("imports", "data", "fit", "model logging"))
    return phases


def child_untracked(epochs: int) -> dict[str, float]:
    """The same training loop, data and model, with no MLflow in the process."""
    t_start, clock, phases = time.perf_counter(), ImportClock(), {}
    import torch

    from pipeline.config.recipes import resolve
    from pipeline.config.stages import TrainConfig
    from pipeline.data.load import load_bundle
    from pipeline.models.registry import build_model
    from pipeline.train.loop import fit

    cfg = resolve(TrainConfig(filters=(4,), seed=0, epochs=epochs))
    torch.set_num_threads(cfg.threads)
    bundle = timed(clock, phases, "data", load_bundle)(cfg)
    model = build_model(cfg.model, bundle.input_shape, 1, cfg.filters, cfg.kernel_size, seed=cfg.seed)
    timed(clock, phases, "fit", fit)(model, bundle, cfg, torch.device(cfg.device))
    phases["imports"], phases["imports cpu"] = clock.total, clock.cpu
    phases["in_process"] = time.perf_counter() - t_start
    return phases


# ----------------------------------------------------------------------------- the parent
def run_process(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return wall, out.stdout + out.stderr


def child_result(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    wall, output = run_process(cmd, cwd, env)
    line = [ln for ln in output.splitlines() if ln.startswith("BENCH ")][-1]
    phases = json.loads(line[len("BENCH "):])
    phases["startup/exit"] = wall - phases.pop("in_process")
    phases["wall"] = wall
    return phases


def median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s.get(k, 0.0) for s in samples) for k in samples[0]}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="processes of each kind; the median is reported")
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--mlflow-run", type=int, default=3, metavar="N", help="times to run `mlflow run .` (0: skip)")
    ap.add_argument("--quick", action="store_true", help="1 repeat, 100 epochs, no `mlflow run .`")
    ap.add_argument("--child", choices=("tracked", "untracked"), help=argparse.SUPPRESS)
    ap.add_argument("--without", choices=tuple(TRICKS.values()), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(REPO))
        result = (child_tracked(args.epochs, args.without) if args.child == "tracked"
                  else child_untracked(args.epochs))
        print("BENCH " + json.dumps(result), flush=True)
        return result
    if args.quick:
        args.repeats, args.epochs, args.mlflow_run = 1, 100, 0

    py = sys.executable
    me = str(Path(__file__).resolve())
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        train_cmd = [py, "-m", "pipeline", *TRAIN_ARGS, "--epochs", str(args.epochs)]
        first, _ = run_process(train_cmd, work, env)  # creates the store; not in the medians
        floor, train, tracked, untracked = [], [], [], []
        variants: dict[str, list[dict[str, float]]] = {trick: [] for trick in TRICKS}
        child = [py, me, "--epochs", str(args.epochs), "--child"]
        for _ in range(args.repeats):  # interleaved, so that a busy spell hits every kind alike
            floor.append(run_process([py, "-c", "import torch, mlflow"], work, env)[0])
            train.append(run_process(train_cmd, work, env)[0])
            tracked.append(child_result([*child, "tracked"], work, env))
            untracked.append(child_result([*child, "untracked"], work, env))
            for trick, flag in TRICKS.items():
                variants[trick].append(child_result([*child, "tracked", "--without", flag], work, env))
    f, t = statistics.median(floor), statistics.median(train)
    tr, un = median_phases(tracked), median_phases(untracked)
    print(f"pipeline train --filters 4 --seed 0 (synthetic, {args.epochs} epochs), whole processes, "
          f"median of {args.repeats} (python {sys.version.split()[0]})")
    print(f"{'process':44s}{'seconds':>9s}{'x floor':>9s}")
    rows = [("floor: python -c 'import torch, mlflow'", f), ("pipeline train", t),
            ("  instrumented (phases below)", tr["wall"]), ("untracked loop, no MLflow", un["wall"]),
            ("pipeline train, first run on a new store", first)]
    for label, sec in rows:
        print(f"{label:44s}{sec:9.2f}{sec / f:9.2f}")
    print(f"\n{'phase (seconds)':16s}{'tracked':>9s}{'cpu':>7s}{'untracked':>11s}{'cpu':>7s}   "
          "(cpu: the main thread's CPU time, whatever else runs)")
    for phase in PHASES:
        cells = [d.get(phase + suffix, float("nan")) for d in (tr, un) for suffix in ("", " cpu")]
        print(f"{phase:16s}{cells[0]:9.2f}{cells[1]:7.2f}{cells[2]:11.2f}{cells[3]:7.2f}")
    savings = print_tricks(tr, {trick: median_phases(v) for trick, v in variants.items()})
    loop, loop_cpu = tr["fit"] / un["fit"], tr["fit cpu"] / un["fit cpu"]
    print(f"\ntrain / floor = {t / f:.2f}x (target <= {TARGET_FLOOR}): {'OK' if t / f <= TARGET_FLOOR else 'OVER'}")
    print(f"tracked loop / untracked loop = {loop:.2f}x (target <= {TARGET_LOOP}): "
          f"{'OK' if loop <= TARGET_LOOP else 'OVER'}; in CPU time of the training thread "
          f"{tr['fit cpu']:.2f} s / {un['fit cpu']:.2f} s = {loop_cpu:.2f}x")
    result = {"floor_s": f, "train_s": t, "first_s": first, "train_over_floor": t / f, "loop_ratio": loop,
              "loop_cpu_ratio": loop_cpu, **savings,
              **{f"tracked_{k}_s": v for k, v in tr.items()}, **{f"untracked_{k}_s": v for k, v in un.items()}}
    if args.mlflow_run:
        walls = mlflow_run(args.mlflow_run, env)
        m = statistics.median(walls)
        print(f"mlflow run . --env-manager local (entry point main): {m:.1f} s (median of "
              f"{', '.join(f'{w:.1f}' for w in walls)}; {m / f:.1f}x the floor; target <= {TARGET_MLFLOW_RUN:.0f} s): "
              f"{'OK' if m <= TARGET_MLFLOW_RUN else 'OVER'}")
        result["mlflow_run_s"] = m
    return result


def print_tricks(tr: dict[str, float], variants: dict[str, dict[str, float]]) -> dict[str, float]:
    """What each process-wide trick saves: the instrumented run without it, against the run with it."""
    print(f"\n{'process-wide trick':24s}{'without (s)':>12s}{'saves (ms)':>12s}{'x':>7s}{'fit without':>13s}"
          f"{'fit with':>10s}   (whole process; x: without / with)")
    savings = {}
    for trick, v in variants.items():
        saved = v["wall"] - tr["wall"]
        savings[f"saves_{TRICKS[trick]}_ms"] = 1000 * saved
        print(f"{trick:24s}{v['wall']:12.2f}{1000 * saved:12.0f}{v['wall'] / tr['wall']:7.2f}"
              f"{v['fit']:13.2f}{tr['fit']:10.2f}")
    return savings


def mlflow_run(times: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``mlflow run . --env-manager local`` (entry point main), each on a new store."""
    bin_dir = str(Path(sys.executable).parent)  # `mlflow run` starts `python` from PATH: this environment's
    env = {**env, "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")])}
    walls = []
    for _ in range(times):
        with tempfile.TemporaryDirectory(prefix="bench-mlflow-run-") as tmp:
            work = Path(tmp)
            cmd = [str(Path(bin_dir) / "mlflow"), "run", str(REPO), "--env-manager", "local",
                   "-P", f"storage=sqlite:///{work / 'optuna.db'}"]
            walls.append(run_process(cmd, work, {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"})[0])
    return walls


if __name__ == "__main__":
    main()
