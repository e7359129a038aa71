"""A progress bar for each epoch of minibatch training: the batches done and the current loss.

Shown on a terminal only (tqdm's ``disable=None``), on stderr, and gone when its epoch ends,
so that logs and pipes keep the labs' printed lines alone.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import torch

REFRESH_S = 0.5  # reading the loss waits for the device: at most this often


class EpochBar:
    def __init__(self, epoch: int, epochs: int, n_batches: int, enabled: bool = True):
        self.bar = None
        if enabled and n_batches > 1:
            from tqdm import tqdm

            bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, disable=None,
                       file=sys.stderr, dynamic_ncols=True)
            self.bar = None if bar.disable else bar
        self._shown = 0.0

    def step(self, loss: torch.Tensor) -> None:
        """One minibatch done, with this loss."""
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._shown >= REFRESH_S:
            self.bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            self._shown = now
        self.bar.update()

    def echo(self, echo: Callable[[str], None], line: str) -> None:
        """Print a line without breaking the bar."""
        if self.bar is None:
            echo(line)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            echo(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


LOG_EVERY_S = 30.0  # in a log (not a terminal): one plain progress line at most this often


class Progress:
    """Progress over a stage's units of work (cells, trials): a tqdm bar on a terminal; in a log file, one plain
    line at most every ``LOG_EVERY_S`` seconds, so that a stage shorter than that writes none."""

    def __init__(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None, file=sys.stderr)
        self.total, self.desc, self.unit, self.done, self.note = total, desc, unit, 0, ""
        self.start = self._said = time.monotonic()

    def describe(self, note: str) -> None:
        """What the current unit is (``F=4 k=3``)."""
        self.note = note
        self.bar.set_postfix_str(note)

    def update(self) -> None:
        self.done += 1
        self.bar.update()
        now = time.monotonic()
        if self.bar.disable and now - self._said >= LOG_EVERY_S:
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s done in {now - self.start:.0f} s",
                  file=sys.stderr, flush=True)
            self._said = now

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
