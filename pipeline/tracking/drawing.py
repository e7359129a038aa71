"""Figures and images drawn in a helper process while the stage goes on, logged to its run when drawn.

Drawing is slow next to the work it shows: matplotlib takes about half a second to import
and a few tenths per figure, more than the synthetic recipe's whole training. A
``Drawing`` hands each figure to a helper process (``python -m pipeline.tracking.drawing``,
one per process, started with the first stage that draws, and loading matplotlib at once),
so that the drawing runs on another core while the stage trains and logs its model. The
stage's run ends only after every figure is logged (``close``), and a figure that fails
fails the run, with the helper's traceback.

A drawing function is called as ``function(*args, **kwargs)`` in the helper. It lives in a
module that imports neither torch nor mlflow (``pipeline.tracking.figures``, ``pipeline.train.filters``),
so that the helper stays light, and takes plain data (numbers, strings, lists, numpy arrays).
It is given as the function or by name, ``"module:function"``: by name, the stage's process
never imports its module (``pipeline.tracking.figures`` imports matplotlib). A figure's drawing
function may return None: the figure does not apply to this data, and nothing is logged
(``pipeline.sweep.plots``: an Optuna plot that cannot be drawn). ``preload`` imports a drawing's
heavy modules in the helper ahead of time, while the stage works.
"""
from __future__ import annotations

import atexit
import io
import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

_HEADER = struct.Struct("!Q")  # each message: its length, then its pickle
Drawer = Union[str, Callable[..., Any]]  # a drawing function, or its "module:function"
FIGURES = "pipeline.tracking.figures"  # the shared drawing functions, named (f"{FIGURES}:heatmaps"): no matplotlib here


def _pack(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _send(stream: BinaryIO, message: Any) -> None:
    stream.write(_pack(message))
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    """The next message, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))


# ----------------------------------------------------------------------------- in the helper
def _call(draw: str, args: tuple, kwargs: dict) -> Any:
    import importlib

    module, _, name = draw.partition(":")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _png(draw: str, args: tuple, kwargs: dict) -> bytes | None:
    """The matplotlib figure that ``draw`` returns, as PNG bytes (as ``mlflow.log_figure`` saves it); None
    for None."""
    import matplotlib.pyplot as plt

    fig = _call(draw, args, kwargs)
    if fig is None:  # nothing to log
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _serve() -> None:
    """Answer jobs ``(id, as_png, draw, args, kwargs)`` from stdin with ``(id, ok, result or traceback)``,
    until stdin ends (the stage's process is done with it, or gone)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the stage's process, which then closes stdin
    jobs, answers = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the answers
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - loaded before the first job arrives

    while (job := _receive(jobs)) is not None:
        job_id, as_png, draw, args, kwargs = job
        try:
            _send(answers, (job_id, True, (_png if as_png else _call)(draw, args, kwargs)))
        except Exception:  # noqa: BLE001 - any drawing's error goes back: the stage raises DrawingError with it
            _send(answers, (job_id, False, traceback.format_exc()))
    os._exit(0)  # every answer is sent: nothing to clean up, and the stage's process may be waiting


# ----------------------------------------------------------------------------- in the stage's process
class DrawingError(RuntimeError):
    """A figure failed in the helper process (the message holds its traceback)."""


class _Helper:
    """The helper process, with a thread that feeds it jobs and one that collects its answers."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where `pipeline` is importable from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.tracking.drawing"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._gone: str | None = None  # why the helper stopped answering, once it has
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._feed, name="drawing-feed", daemon=True).start()
        threading.Thread(target=self._collect, name="drawing-collect", daemon=True).start()

    def submit(self, as_png: bool, draw: str, args: tuple, kwargs: dict) -> Future:
        future: Future = Future()
        with self._lock:
            job_id, self._next = self._next, self._next + 1
            message = _pack((job_id, as_png, draw, args, kwargs))  # here, so that bad arguments fail the caller
            if self._gone:
                future.set_exception(DrawingError(self._gone))
                return future
            self._futures[job_id] = future
        self._jobs.put(message)  # the feeder writes it: a full pipe never blocks the stage
        return future

    def alive(self) -> bool:
        return self._gone is None and self.proc.poll() is None

    def close(self) -> None:
        self._jobs.put(None)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _feed(self) -> None:
        try:
            while (message := self._jobs.get()) is not None:
                self.proc.stdin.write(message)
                self.proc.stdin.flush()
        except OSError:  # the helper died; _collect fails what is pending
            pass
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def _collect(self) -> None:
        while (answer := _receive(self.proc.stdout)) is not None:
            job_id, ok, result = answer
            with self._lock:
                future = self._futures.pop(job_id)
            if ok:
                future.set_result(result)
            else:
                future.set_exception(DrawingError(f"drawing failed in the helper process:\n{result}"))
        gone = f"the drawing helper exited (status {self.proc.wait()})"
        with self._lock:
            pending, self._futures, self._gone = list(self._futures.values()), {}, gone
        for future in pending:
            future.set_exception(DrawingError(gone))


# The one helper process of this process, reused by every stage that draws (`pipeline main` runs
# five): each stage would otherwise start its own interpreter and import matplotlib again. What the
# helper saves in `pipeline train` shows in benchmarks/bench_train.py ("drawing helper process").
_HELPER: _Helper | None = None


def _helper() -> _Helper:
    global _HELPER
    if _HELPER is None or not _HELPER.alive():
        first = _HELPER is None
        _HELPER = _Helper()
        if first:
            atexit.register(lambda: _HELPER.close())
    return _HELPER


def start() -> None:
    """Start this process's helper now, as the first ``Drawing`` would: the CLI calls it before it loads torch and
    mlflow (about 3 s), so that the helper has loaded matplotlib on the other core before a stage draws."""
    _helper()


class Drawing:
    """Figures and time-stepped images for the active run, drawn by the helper process."""

    def __init__(self) -> None:
        self._pending: list[tuple[Future, Callable[[Any], None]]] = []
        _helper()  # started now, so that matplotlib is loaded by the time the figures come

    def figure(self, artifact_file: str, draw: Drawer, *args: Any, **kwargs: Any) -> None:
        """Log the matplotlib figure that ``draw`` returns as ``artifact_file`` (PNG); nothing if it returns None."""
        future = _helper().submit(True, _name(draw), args, kwargs)
        self._pending.append((future, lambda png: None if png is None else _log_bytes(png, artifact_file)))

    def preload(self, *modules: str) -> None:
        """Import ``modules`` in the helper now, so that the figures that need them are quick when they come;
        an import that fails fails the run like a figure."""
        future = _helper().submit(False, _name(load), modules, {})
        self._pending.append((future, lambda _: None))

    def image(self, key: str, step: int, draw: Drawer, *args: Any, **kwargs: Any) -> None:
        """Log the RGB array that ``draw`` returns as image ``key`` at ``step`` (the UI's step slider)."""
        import mlflow

        timestamp = int(time.time() * 1000)  # when it was drawn from, not when it is logged
        future = _helper().submit(False, _name(draw), args, kwargs)
        self._pending.append((future, lambda rgb: mlflow.log_image(rgb, key=key, step=step, timestamp=timestamp,
                                                                   synchronous=True)))

    def image_file(self, artifact_file: str, draw: Drawer, *args: Any, **kwargs: Any) -> None:
        """Log the RGB array that ``draw`` returns as ``artifact_file`` (PNG)."""
        import mlflow

        future = _helper().submit(False, _name(draw), args, kwargs)
        self._pending.append((future, lambda rgb: mlflow.log_image(rgb, artifact_file=artifact_file)))

    def log_ready(self) -> None:
        """Log what is drawn already, without waiting (a failed figure raises here)."""
        while self._pending and self._pending[0][0].done():
            future, log = self._pending.pop(0)
            log(future.result())

    def close(self) -> None:
        """Wait for every figure and log it, in the order they were asked for."""
        while self._pending:
            future, log = self._pending.pop(0)
            log(future.result())

    def __enter__(self) -> "Drawing":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # the stage failed already: what is still being drawn is not logged
            self._pending = []


def load(*modules: str) -> None:
    """Import ``modules`` (``Drawing.preload``'s job in the helper)."""
    import importlib

    for module in modules:
        importlib.import_module(module)


def _name(draw: Drawer) -> str:
    return draw if isinstance(draw, str) else f"{draw.__module__}:{draw.__qualname__}"


def _log_bytes(data: bytes, artifact_file: str) -> None:
    import mlflow

    directory, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "wb") as fh:
            fh.write(data)
        mlflow.log_artifact(path, artifact_path=directory or None)


if __name__ == "__main__":
    _serve()
