"""The error types that become one line on stderr, never a traceback, each with its exit status.

``ConfigError``: bad input (exit 2). ``EnvironmentFault``: the machine or a store failed
(exit 1). ``CheckFailed``: a result did not pass its check, e.g. a replay that does not end where
the run it replays ended (exit 1; the stage's run ends FAILED with it). ``Interrupted``: a signal arrived (exit 128 + N); it is a ``KeyboardInterrupt``,
so that Optuna fails the current trial and the stage ends its runs KILLED.
``interrupt_signals`` turns SIGINT, SIGTERM and SIGHUP into ``Interrupted``; inside
``deferred_interrupts`` (a training loop that checkpoints) the signal is held until the loop
calls ``check_interrupt`` at a point where its state is whole; inside ``guarded`` (a run being created or
ended) until the run's work begins, or the block ends.
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


class _Guarded(list):
    """The signals that a ``guarded`` block holds (not a checkpointing loop's: ``interrupt_pending`` ignores them)."""


class Guard:
    """What ``guarded`` yields: ``released()`` is the part of the block where signals raise as they do outside it."""

    def __init__(self, outer: list[int] | None, active: bool = True):
        self.outer, self.active = outer, active
        self.signals = _Guarded()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Signals raise at once in here (one held before it first); they are held again once it ends."""
        global _held
        if not self.active:
            yield
            return
        _held = self.outer
        try:
            self.pass_on()
            yield
        finally:
            _held = self.signals

    def pass_on(self) -> None:
        """A held signal goes to the hold around this one, or is raised when there is none."""
        if self.outer is not None:
            self.outer.extend(self.signals)
            self.signals.clear()
        elif self.signals:
            raise Interrupted(self.signals.pop())

    def end(self, into: list[int] | None) -> None:
        """At the block's end: a held signal goes to ``into`` when given, else on (``pass_on``)."""
        if into is not None:
            into.extend(self.signals)
        else:
            self.pass_on()


@contextlib.contextmanager
def guarded(into: list[int] | None = None) -> Iterator[Guard]:
    """Hold the signals of ``interrupt_signals`` in the block, except inside ``guard.released()``: the block makes
    something that must not be left behind (a run), does its work released, and ends it held. A signal between
    the store's insert and the caller's hold on the new run, or inside the call that ends it, had left it RUNNING.
    A signal held at the end is put in ``into`` when given (raised by the caller later), else raised, in place of
    an error that is not itself a signal. Off the main thread nothing is held: signals are raised in the main
    thread."""
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield Guard(None, active=False)
        return
    guard = Guard(_held)
    _held = guard.signals
    try:
        yield guard
    except BaseException as err:
        _held = guard.outer
        if not isinstance(err, (KeyboardInterrupt, GeneratorExit)):
            guard.end(into)
        raise
    _held = guard.outer
    guard.end(into)


def interrupt_pending() -> bool:
    """Whether a checkpointing loop holds a signal (long work, such as sending metrics, stops early then)."""
    return bool(_held) and not isinstance(_held, _Guarded)


def check_interrupt() -> None:
    """Raise ``Interrupted`` for a held signal."""
    if _held:
        raise Interrupted(_held.pop())
