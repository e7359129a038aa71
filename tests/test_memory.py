"""The C allocator's thresholds (``pipeline.train.memory``), set where the CLI owns the process."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import cli
from pipeline.train import memory

GLIBC = memory.glibc()

# In a fresh interpreter: malloc 16 MiB, touch it, free it; how much of it the process still holds (MiB).
_HELD = """
import ctypes, os, sys
from pipeline.train.memory import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory() == ""
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
p = libc.malloc(16 << 20)
ctypes.memset(p, 1, 16 << 20)
libc.free(ctypes.c_void_p(p))
print((rss() - before) >> 20)
"""


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; this C library is another")
def test_a_freed_large_buffer_is_kept_only_with_the_thresholds_set():
    """glibc's default hands a freed 16 MiB buffer back to the system at once (it was mapped on its own); with
    ``keep_freed_memory`` it stays in the heap for the next step. Needs fresh interpreters: mallopt is process-wide."""
    held = {mode: int(subprocess.run([sys.executable, "-c", _HELD, mode], capture_output=True, text=True,
                                     check=True).stdout) for mode in ("default", "kept")}
    assert held["default"] < 4 and held["kept"] >= 12, held


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; this C library is another")
def test_glibc_takes_both_thresholds():
    assert memory.keep_freed_memory() == ""  # the values this process keeps anyway (the suite's memory)


def test_another_c_library_is_left_alone(monkeypatch):
    monkeypatch.setattr(memory.os, "confstr", lambda name: None)  # musl answers None, macOS raises ValueError
    assert not memory.glibc() and memory.keep_freed_memory() == ""


def test_the_cli_sets_the_thresholds_only_in_its_own_process_and_says_when_refused(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or "the allocator's thresholds were not "
                        "set (glibc refused M_TRIM_THRESHOLD); large buffers come from fresh pages at every step")
    monkeypatch.setattr(cli.atexit, "register", lambda fn: None)  # the suite's process is not frozen at its exit
    monkeypatch.setattr(cli, "_OWN_PROCESS", cli._OWN_PROCESS)  # main() sets it: restored after the test
    assert cli.main(["recipes"]) is None and calls == []  # a caller's process (here pytest's) is not the CLI's
    monkeypatch.setattr(cli.sys, "argv", ["pipeline", "recipes"])
    cli.main()
    assert calls == [1]
    assert capsys.readouterr().err.strip() == ("Note: the allocator's thresholds were not set (glibc refused "
                                               "M_TRIM_THRESHOLD); large buffers come from fresh pages at every step")
