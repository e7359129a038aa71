"""The `pipeline train` benchmark runs every kind of process and prints its ratios and phases."""
from __future__ import annotations

import importlib.util

import pytest

from helpers import REPO


@pytest.mark.slow
def test_bench_train_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--quick"])
    out = capsys.readouterr().out
    assert "floor: python -c 'import torch, mlflow'" in out and "untracked loop, no MLflow" in out
    for phase in bench.PHASES:
        assert f"\n{phase}" in out, phase
    assert "train / floor = " in out and "tracked loop / untracked loop = " in out
    assert result["tracked_fit_s"] > 0 and result["untracked_fit_s"] > 0 and result["tracked_model logging_s"] > 0
