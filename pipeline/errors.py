"""The error types that become one line on stderr, never a traceback, each with its exit status.

``ConfigError``: bad input (exit 2). ``EnvironmentFault``: the machine or a store failed
(exit 1). ``CheckFailed``: a result did not pass its check, e.g. a replay that does not end where
the run it replays ended (exit 1; the stage's run ends FAILED with it). ``Interrupted``: a signal arrived (exit 128 + N); it is a ``KeyboardInterrupt``,
so that Optuna fails the current trial and the stage ends its runs KILLED.
``interrupt_signals`` turns SIGINT, SIGTERM and SIGHUP into ``Interrupted``; inside
``deferred_interrupts`` (a training loop that checkpoints) the signal is held until the loop
calls ``check_interrupt`` at a point where its state is whole; inside ``held_interrupts`` (a run being
created) until the caller, holding the new run, raises it with ``raise_held``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator


class ConfigError(ValueError):
    """Bad user input: reported as one line, never as a traceback."""

    exit_code = 2


class NonFiniteLoss(ConfigError):
    """Training diverged (a NaN or infinite loss): the settings do not train, so it is bad input."""


class EnvironmentFault(RuntimeError):
    """The environment failed (a store that does not answer or is read-only, a full disk): exit 1."""

    exit_code = 1


class CheckFailed(RuntimeError):
    """A result failed its check (not the store, not the input): exit 1 with its one line."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: the stage ends its runs KILLED and exits 128 + N."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

        self.resume_hint = ""  # set by a stage that saved a checkpoint: the command that continues it

    def __str__(self) -> str:
        if self.resume_hint:
            return (f"stopped by {signal.Signals(self.signum).name}: the run was ended KILLED with a checkpoint; "
                    f"continue it with `{self.resume_hint}`")
        return (f"stopped by {signal.Signals(self.signum).name}: the runs in progress were ended KILLED "
                "(a sweep's current trial is FAIL and is retried when the study is resumed)")


def debugging() -> bool:
    """``PIPELINE_DEBUG`` is set (``--debug`` sets it): tracebacks and library INFO logs are shown."""
    return os.environ.get("PIPELINE_DEBUG", "").lower() not in ("", "0", "false", "no")


HANDLED_SIGNALS = tuple(s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


@contextlib.contextmanager
def interrupt_signals() -> Iterator[None]:
    """Raise ``Interrupted`` in the main thread on the first SIGINT, SIGTERM or SIGHUP.

    Later signals are ignored, so that the cleanup (ending runs, failing the trial) is not
    itself interrupted; it is bounded by the stores' timeouts. The previous handlers come back
    at the end (in-process callers such as tests keep theirs).
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            if _held is not None:
                _held.append(signum)  # raised by check_interrupt, where the loop's state is whole
                return
            raise Interrupted(signum)

    previous = {}
    for name in HANDLED_SIGNALS:
        num = getattr(signal, name)
        try:
            previous[num] = signal.signal(num, handler)
        except ValueError:  # not the main thread: signals stay as they are
            break
    try:
        yield
    finally:
        for num, old in previous.items():
            signal.signal(num, old)


_held: list[int] | None = None  # signals held while a checkpointing loop runs (None: raise at once)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold the signals of ``interrupt_signals`` until ``check_interrupt`` (called between minibatches), so that
    the loop stops where a checkpoint continues it exactly; a signal still held at the end is raised then."""
    global _held
    outer, _held = _held, []
    try:
        yield
        check_interrupt()
    finally:
        _held = outer


@contextlib.contextmanager
def held_interrupts() -> Iterator[list[int]]:
    """Hold the signals of ``interrupt_signals`` while the block creates something that must not be left behind
    (a run: raised between the store's insert and the caller's hold on the new run, a signal left it RUNNING);
    yields the held signals, which the caller raises with ``raise_held`` once it can end what was made. Inside
    ``deferred_interrupts`` they go on being held there. Off the main thread nothing is held: a signal is raised
    in the main thread, never in the middle of this block."""
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    outer, _held = _held, []
    held = _held
    try:
        yield held
    finally:
        _held = outer
        if outer is not None:
            outer.extend(held)
            held.clear()


def raise_held(held: list[int]) -> None:
    """Raise ``Interrupted`` for a signal that ``held_interrupts`` held."""
    if held:
        raise Interrupted(held.pop())


def interrupt_pending() -> bool:
    """Whether a signal is held (long work, such as sending metrics, stops early then)."""
    return bool(_held)


def check_interrupt() -> None:
    """Raise ``Interrupted`` for a held signal."""
    if _held:
        raise Interrupted(_held.pop())
