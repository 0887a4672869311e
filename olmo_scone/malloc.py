"""Keep large freed blocks in the process heap instead of returning them to the OS (glibc).

Why: a CPU training step of a small model allocates and frees tensors of hundreds of MB (the logits
of a micro-batch over the 50K-token vocabulary are ``micro x seq x 50,304`` floats: 206 MB at 8 x
128). glibc serves every block above its mmap threshold (at most 32 MB by default) with a fresh
``mmap`` and unmaps it on free, so each step the kernel zeroes those pages again: on the 2-core
machine half of the training time was system time spent on page faults. Raising the thresholds
once per process lets freed blocks be reused; ``scripts/benchmark_train_step.py`` measures the
effect side by side (docs/benchmarks.md). The arithmetic is unchanged: results are bit-identical.

Not for SCONE training: its per-batch f-gram tensors change size every micro-batch, and with these
thresholds the heap fragmented by ~100 MB a step (a 200-step study run reached 10 GB a rank and
was killed); the trainer tunes only baselines, whose tensors repeat. ``evaluate.py`` tunes every
model: measured on a SCONE artifact, its peak stays ~0.5 GB higher without growing, for half the
wall time (docs/benchmarks.md).

Set ``OLMO_SCONE_MALLOC_TUNING=0`` to leave the allocator alone. A no-op where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
THRESHOLD_BYTES = 1 << 30  # blocks up to 1 GiB come from (and go back to) the heap

_done = False


def keep_large_allocations() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when it took effect."""
    global _done
    if _done:
        return True
    if os.environ.get("OLMO_SCONE_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    )
    return _done
