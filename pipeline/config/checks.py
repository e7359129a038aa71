"""Checks that a stage runs on its inputs before any work: files it will write can be written,
and sizes fit in this machine's memory. Each failure is a ``ConfigError`` that names the
option and the fix, so that no training is thrown away by a fault found at its end.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError

MEMORY_SHARE = 0.8  # of the memory available now: the rest is for Python, torch and the OS


def writable_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` can be created or overwritten: its folder exists and takes files, it is not a folder."""
    file = Path(path).expanduser()
    folder = file.parent
    if file.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist; create it or give another path")
    if not os.access(folder, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise ConfigError(f"{option} {path}: cannot write there (permission denied); give another path")
    return file


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else the physical total)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} EiB"


def fits_in_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse ``nbytes`` for ``what`` when it exceeds the memory that this machine has free."""
    free = available_memory()
    if nbytes > MEMORY_SHARE * free:
        raise ConfigError(f"{what} needs about {_size(nbytes)}, more than the {_size(free)} of memory free "
                          f"here; {fix}")
