"""What every study stage does around its MLflow runs (``tracking.studies``), written once: its seeds,
a child run's params, torch's thread count for the stage (and the compiled 1D trainer's), the per-seed table
on local disk, and the console's closing lines."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from pipeline.config.parsing import defining_params


def seeds_of(cfg: Any) -> list[int]:
    """The study's seeds, ``--first-seed`` and the ``--seeds`` - 1 after it (their tag: first-last)."""
    return list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))


def child_params(cfg: Any, grid_fields: Iterable[str], **cell: Any) -> dict[str, Any]:
    """A child run's params: the study's defining params without its grid's fields, plus the cell's own values."""
    drop = set(grid_fields)
    return {**{name: v for name, v in defining_params(cfg).items() if name not in drop}, **cell}


def thread_count(threads: int) -> int:
    """The compiled 1D trainer's threads for ``--threads`` (0: every core this process may use), at most the size
    of numba's pool (``NUMBA_NUM_THREADS``, by default those cores), as ``fused.sgd_epochs`` caps them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # numba's
    pool = int(os.environ.get("NUMBA_NUM_THREADS") or cores)
    return min(threads or pool, pool)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block (0: torch's default), then restored."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def write_table(table: pd.DataFrame, path: str | None) -> None:
    """``--table PATH``: the per-seed table as a local CSV file too (before the run's own logging ends)."""
    if path:
        table.to_csv(path, index=False)


def finish(lines: Iterable[str], table_path: str | None, run_line: str, echo: Callable[[str], None]) -> None:
    """The console summary, where the local table went, and the run to open."""
    for line in lines:
        echo(line)
    if table_path:
        echo(f"per-seed table written to {table_path}")
    echo(run_line)
