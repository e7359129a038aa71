"""The seeds of a cell side by side: groups of seeds in threads of their own, one torch thread each.

On a CPU, torch splits each operation of one small net over the cores, and pays for it: mnist-rmsprop's net
(one seed per group) trained an epoch of 7,200 MNIST images in 2.7-3.2 s on one thread and 1.5-2.1 s on two,
not in half the time. Run side by side, each seed in its own thread on one torch thread, the seeds keep
every core busy with whole operations (three seeds: 1.44-1.48 s per seed-epoch). A seed's arithmetic is
then its own thread's, the same whichever thread runs it and whatever runs beside it.
"""
from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Iterator

import torch


def workers(groups: int, cores: int) -> int:
    """Threads for ``groups`` groups of a split plan on ``cores`` threads: the fewest with the least wall
    time, ceil(groups / w) rounds of max(1, w / cores) (more threads than cores share them), at most
    twice ``cores``. 3 seeds on 2 cores: 3 threads (1.5 rounds, against 2 rounds for 2 threads)."""
    top = max(1, min(groups, 2 * cores))
    return min(range(min(cores, top), top + 1), key=lambda w: (math.ceil(groups / w) * max(1.0, w / cores), w))


class Halted(Exception):
    """A group's epoch stopped because another group's failed or the run was stopped."""


@contextlib.contextmanager
def side_by_side(groups: list, split: bool) -> Iterator[Callable[[Callable], list]]:
    """``each(fn)``: [fn(g) for g in groups], one group after another, or (``split``) side by side in
    ``workers`` threads with one torch thread each, torch's thread count restored after. A group has a
    ``halt`` event, which it checks at every training minibatch: a failure or a stop (Ctrl-C) halts the others."""
    if not split or len(groups) == 1:
        yield lambda fn: [fn(g) for g in groups]
        return
    cores, halt = torch.get_num_threads(), threading.Event()
    for g in groups:
        g.halt = halt
    try:
        torch.set_num_threads(1)
        with ThreadPoolExecutor(workers(len(groups), cores), thread_name_prefix="seeds") as pool:
            try:
                yield lambda fn: _each(pool, halt, fn, groups)
            finally:
                halt.set()  # nothing is left to run after a normal end; after a failure, the others stop
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        torch.set_num_threads(cores)


class ThreadsNotSplit(RuntimeError):
    """torch runs a seed's thread on more than one thread: its bits would depend on what runs beside it."""


def _one_torch_thread() -> None:
    """Before a group's work in a worker: one torch thread for this thread, or ThreadsNotSplit (a torch whose thread count is not
    per thread, e.g. its native pool, which ignores ``set_num_threads`` after its first parallel work)."""
    torch.set_num_threads(1)
    if torch.get_num_threads() != 1:
        raise ThreadsNotSplit(f"torch kept {torch.get_num_threads()} threads in a seed's thread; use --threads 1")


def _each(pool: ThreadPoolExecutor, halt: threading.Event, fn: Callable, groups: list) -> list:
    """[fn(g) for g in groups] on ``pool``; a failure sets ``halt`` at once, and once all have stopped the first
    failure in group order that is not a ``Halted`` (the group that failed, not one that it stopped) is raised."""
    def run(g):
        try:
            _one_torch_thread()
            return fn(g)
        except BaseException:
            halt.set()
            raise

    futures = [pool.submit(run, g) for g in groups]
    wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Halted)), errors[0])
    return [f.result() for f in futures]
