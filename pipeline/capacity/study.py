"""What every study stage does around its MLflow runs (``tracking.studies``), written once: torch's
thread count for the stage, the per-seed table on local disk, and the console's closing lines."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import pandas as pd


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
