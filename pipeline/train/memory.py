"""The C allocator's handling of large buffers, for the whole process: freed memory kept for the next step.

glibc's malloc serves a buffer over its mmap threshold from fresh pages of its own, and hands the top of its
heap back to the system once more than its trim threshold is free there; both thresholds start small (128 KiB,
256 KiB) and grow only as such buffers are freed. A training step allocates its activations and gradients
(megabytes each for a 28x28 net, tens of MiB for several seeds stacked) and frees them again, so step after step
the kernel zeroes and maps fresh pages: mnist-rmsprop's net, three seeds grouped (16 MiB activations), ran its
first epoch on 7,200 MNIST images at 1.6-1.8x the time of its second, step after step; with the thresholds set
once, the two took the same time. ``benchmarks/bench_image_multiseed.py``'s ``allocator`` row measures it in two
fresh processes, on 1,280 images, where the first steps' one-time costs weigh more (first epoch 773-794 ms per
seed-epoch with glibc's thresholds, 494-686 with these). What this costs: the process keeps up to
``TRIM_THRESHOLD`` of freed heap instead of returning it.

Process-wide by nature, so set only where ``pipeline.cli.main`` owns the process (as its frozen collector).
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # buffers up to this size come from the heap (glibc's largest on 64-bit systems)
TRIM_THRESHOLD = 1 << 30  # freed heap kept up to this size


def keep_freed_memory() -> str:
    """Set glibc's thresholds (``MMAP_THRESHOLD``, ``TRIM_THRESHOLD``): '' when done or when the C library is
    another (its allocator has its own policy, and no such thresholds), else what glibc refused, in one line."""
    if not glibc():
        return ""
    mallopt = ctypes.CDLL(None).mallopt
    refused = [name for name, param, value in (("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                                ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, TRIM_THRESHOLD))
               if mallopt(param, value) != 1]
    return (f"the allocator's thresholds were not set (glibc refused {', '.join(refused)}); large buffers come "
            "from fresh pages at every step") if refused else ""


def glibc() -> bool:
    """Whether this process runs on glibc (``os.confstr``: no scan of the interpreter's binary)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or a C library without the name
        return False
