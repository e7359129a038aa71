"""The input-pipeline benchmark runs, compares both paths on the same epoch, and reports the target."""
from __future__ import annotations

import importlib.util

from helpers import REPO


def test_bench_input_pipeline_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_input_pipeline",
                                                  REPO / "benchmarks" / "bench_input_pipeline.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--n", "3000", "--repeat", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "labs: DataLoader + ToTensor" in out and "project: tensors + index perm." in out
    assert "target: project data overhead <= 5% of its epoch time:" in out
    for path in ("labs", "project"):
        assert 0 < result[f"{path}_data_s"] < result[f"{path}_epoch_s"]
    # per-sample PIL + ToTensor against one gather and conversion per chunk: not close, even on a busy machine
    assert result["labs_data_s"] > 3 * result["project_data_s"]
