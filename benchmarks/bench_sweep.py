"""The sweep machinery's own overhead per trial: Optuna plus the MLflow child run.

A trivial objective (no training) runs N trials through ``pipeline.sweep.run``, once on
the default storage (SQLite file, heartbeats on) and once in memory, both tracking to a
fresh SQLite MLflow store, in one process. Target: <= 50 ms per trial on the default storage.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from pipeline.config.studies import SweepConfig
from pipeline.sweep import stage as sweep


def trivial(cfg):
    def objective(trial, run, point):
        return (float(point["filters"] * point["kernel_size"]),)

    return objective


def measure(storage: str | None, n: int, workdir: str) -> tuple[float, float]:
    """(ms per trial inside study.optimize, ms per trial including the parent's summary)."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        cfg = SweepConfig(study_name=f"bench-{storage or 'default'}", storage=storage, n_trials=n,
                          sampler="random", progress=False, tracking_uri=f"sqlite:///{workdir}/mlflow.db")
        t0 = time.perf_counter()
        result = sweep.run(cfg, echo=lambda s: None, objective_factory=trivial)
        total = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    return 1000 * result.seconds / n, 1000 * total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20 trials, for a smoke test")
    args = ap.parse_args()
    n = 20 if args.quick else args.trials
    rows = []
    for label, storage in (("in-memory", "memory"), ("default (sqlite:///optuna.db)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append((label, *measure(storage, n, tmp)))
    print(f"sweep overhead per trial, trivial objective, {n} trials, MLflow child run per trial")
    print(f"{'Optuna storage':32s} {'ms/trial':>9s} {'incl. summary':>14s}")
    for label, per, total in rows:
        print(f"{label:32s} {per:9.1f} {total:14.1f}")
    ratio = rows[1][1] / rows[0][1]
    verdict = "OK" if rows[1][1] <= 50 else "OVER TARGET"
    print(f"default / in-memory = {ratio:.2f}x; default storage {rows[1][1]:.1f} ms/trial (target <= 50): {verdict}")


if __name__ == "__main__":
    main()
