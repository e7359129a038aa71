"""Benchmark: the default `pipeline capacity` (F = 1..8 x k = 3, 5, 7, 200 seeds: 4,800 trainings) as a
whole process, against the floor of any tracked stage, `python -c "import torch, mlflow"`.

    python benchmarks/bench_capacity_grid.py             # 2 rounds (about 40 s on 2 cores)
    python benchmarks/bench_capacity_grid.py --quick     # a smoke run: a 2 x 1 grid of 20 seeds

Each round runs, side by side in time, the import floor, the grid on an existing store (a SQLite
file made by a first run, not timed) and the grid on a fresh store (a new file: MLflow creates its
tables first). Each row is the median of the rounds' wall times; the ratio divides by the floor's.
The grid's own training time is what the stage reports (``trainings in ... s``).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S, TARGET_X_FLOOR = 5.0, 2.0  # the whole default grid on an existing store


def timed(args: list[str], cwd: str, store: str) -> tuple[float, str]:
    """Wall seconds of one process and its stdout."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return wall, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round of a 2 x 1 grid of 20 seeds")
    a = parser.parse_args()
    grid = ["-m", "pipeline", "capacity", *(["--filters", "1-2", "--kernel-sizes", "3", "--seeds", "20"]
                                           if a.quick else [])]
    rounds = 1 if a.quick else a.rounds
    walls: dict[str, list[float]] = {"import torch, mlflow (floor)": [], "capacity, existing store": [],
                                     "capacity, fresh store": []}
    train: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        existing = os.path.join(tmp, "existing.db")
        timed(grid, tmp, existing)  # makes the store (not timed)
        for r in range(rounds):
            walls["import torch, mlflow (floor)"].append(timed(["-c", "import torch, mlflow"], tmp, existing)[0])
            wall, out = timed(grid, tmp, existing)
            walls["capacity, existing store"].append(wall)
            train.append(float(re.search(r"trainings in ([\d.]+) s", out).group(1)))
            walls["capacity, fresh store"].append(timed(grid, tmp, os.path.join(tmp, f"fresh{r}.db"))[0])
    floor = statistics.median(walls["import torch, mlflow (floor)"])
    print(f"default capacity grid as a whole process ({'quick grid' if a.quick else '4,800 trainings'}), "
          f"median of {rounds} round(s), {os.cpu_count()} cores")
    print(f"{'process':32s} {'wall s':>8s} {'x floor':>8s}")
    for name, values in walls.items():
        print(f"{name:32s} {statistics.median(values):8.2f} {statistics.median(values) / floor:8.2f}")
    print(f"{'  of which training (stage says)':32s} {statistics.median(train):8.2f}")
    existing = statistics.median(walls["capacity, existing store"])
    if not a.quick:
        print(f"target (issue 22): at most {TARGET_S:.0f} s, about {TARGET_X_FLOOR:.0f}x the floor: "
              f"{existing:.2f} s, {existing / floor:.2f}x: {'OK' if existing <= TARGET_S else 'OVER'} (5 s), "
              f"{'OK' if existing <= TARGET_X_FLOOR * floor else 'OVER'} (x floor)")


if __name__ == "__main__":
    main()
