"""The 1D grid trained ahead of its logging: a thread trains the configurations in order while the stage opens its
tracking store and runs and logs each finished configuration's child run.

On the CPU the compiled trainer (``fused.py``) holds no interpreter lock while it trains, so the grid trains on
the cores while the stage's own thread loads MLflow's store, opens the parent run and logs children: about 1.2 s
of store and run work that used to come before any training, and 0.7 s of child runs that came between the
configurations. What the stage logs, and in which order, is as before: each configuration's child after its
training, in grid order; the figures are asked for as soon as the last configuration is trained.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator, Sequence

Cell = tuple[int, int]  # (filters, kernel size)


class GridAhead:
    """``train(f, k)`` for each cell of ``grid``, in order, in a thread of its own (started on entering the
    ``with`` block). Leaving the block, after a failure or a stop too, tells the thread to stop after its cell in
    progress and waits for that (a 1D cell: tens of milliseconds for the default grid; the first compile of the
    loops, where ``make setup`` did not, 10-15 s).

    ``batches()`` yields what has been trained since the last batch (at least one cell), each item
    ``(f, k, result, seconds)``; a failure of the training is raised there, in the stage's thread, after the
    cells trained before it.
    ``warm`` runs first in the thread (the compiled trainer's import and machine code).
    """

    def __init__(self, grid: Sequence[Cell], train: Callable[[int, int], Any], warm: Callable[[], None] | None = None):
        self.grid = list(grid)
        self._train, self._warm = train, warm
        self._done: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity-trainer", daemon=True)  # joined on exit

    def __enter__(self) -> "GridAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()  # never left running into the interpreter's exit: numba's pool torn down under a
        # running loop aborts the process ("terminate called without an active exception"; seen after a SIGHUP)

    def _run(self) -> None:
        try:
            if self._warm is not None:
                self._warm()
            for f, k in self.grid:
                if self._stop.is_set():
                    return
                t0 = time.perf_counter()
                result = self._train(f, k)
                self._done.put((f, k, result, time.perf_counter() - t0))
        except BaseException as err:  # handed to the stage's thread, which raises it
            self._done.put(err)

    def batches(self) -> Iterator[list[tuple[int, int, Any, float]]]:
        """The trained cells in grid order, in batches of what was ready (waiting for one when none was)."""
        left = len(self.grid)
        while left:
            items = [self._done.get()]
            while True:
                try:
                    items.append(self._done.get_nowait())
                except queue.Empty:
                    break
            failed = next((i for i, item in enumerate(items) if isinstance(item, BaseException)), None)
            if failed is not None:  # the cells trained before it are logged first
                if failed:
                    yield items[:failed]
                raise items[failed]
            left -= len(items)
            yield items
