"""The `pipeline train` benchmark: every kind of process has its row, and the printed ratios and the
phase breakdown agree with the printed times (recomputed here from the printed table)."""
from __future__ import annotations

import importlib.util
import math
import re

import pytest

from helpers import REPO

PROCESSES = ("floor: python -c 'import torch, mlflow'", "pipeline train", "  instrumented (phases below)",
             "untracked loop, no MLflow", "pipeline train, first run on a new store")
ROUNDING = 0.005  # the table prints 2 decimals


def ratio_bounds(top: float, bottom: float) -> tuple[float, float]:
    """The range of a printed 2-decimal ratio of two times that the table printed to 2 decimals each."""
    return (top - ROUNDING) / (bottom + ROUNDING) - ROUNDING, (top + ROUNDING) / max(bottom - ROUNDING, 1e-9) + ROUNDING


def rows(out: str, labels) -> dict[str, list[float]]:
    """label -> the numbers printed after it, for each line that starts with one of ``labels``."""
    found = {}
    for line in out.splitlines():
        for label in labels:
            rest = line[len(label):] if line.startswith(label) else ""
            if rest and re.fullmatch(r"(\s+(-?\d+\.\d+|nan))+", rest):
                found[label] = [float(x) for x in rest.split()]  # "nan" too
    return found


@pytest.mark.slow
def test_bench_train_prints_consistent_times(capsys):
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--quick"])
    out = capsys.readouterr().out
    procs = rows(out, PROCESSES)
    assert set(procs) == set(PROCESSES), f"missing rows: {set(PROCESSES) - set(procs)}\n{out}"
    floor = procs[PROCESSES[0]][0]
    for label, (sec, ratio) in procs.items():  # "x floor" is seconds / the floor's seconds
        assert ratio == pytest.approx(sec / floor, abs=0.01 + ROUNDING * (1 + ratio) / floor), label
    assert procs[PROCESSES[0]][1] == 1.0
    assert result["floor_s"] == pytest.approx(floor, abs=ROUNDING)
    assert result["train_s"] == pytest.approx(procs["pipeline train"][0], abs=ROUNDING)

    phases = rows(out, [f"{p:16s}" for p in bench.PHASES])
    assert len(phases) == len(bench.PHASES), out
    tracked = {p.strip(): v[0] for p, v in phases.items()}
    untracked = {p.strip(): v[2] for p, v in phases.items()}
    assert all(v >= 0 for v in tracked.values()), tracked
    # the tracked phases split the instrumented process's wall time: nothing counted twice, nothing left out
    wall = procs["  instrumented (phases below)"][0]
    assert sum(tracked.values()) == pytest.approx(wall, abs=ROUNDING * (len(tracked) + 1))
    # the untracked process has no tracking and no model logging; its timed phases fit in its wall time
    assert math.isnan(untracked["tracking"]) and math.isnan(untracked["model logging"])
    assert sum(v for v in untracked.values() if not math.isnan(v)) <= procs["untracked loop, no MLflow"][0] + 0.03

    ratio = re.search(r"train / floor = (\d+\.\d+)x", out)
    assert float(ratio.group(1)) == pytest.approx(procs["pipeline train"][0] / floor, abs=0.01 + 2 * ROUNDING / floor)
    loop = re.search(r"tracked loop / untracked loop = (\d+\.\d+)x", out)
    low, high = ratio_bounds(tracked["fit"], untracked["fit"])
    assert low <= float(loop.group(1)) <= high, (loop.group(0), tracked["fit"], untracked["fit"])
    verdict = re.search(r"train / floor = .*: (OK|OVER)", out).group(1)
    assert verdict == ("OK" if result["train_over_floor"] <= bench.TARGET_FLOOR else "OVER")
