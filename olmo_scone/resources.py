"""What this machine can run: CPU and memory limits that keep a command's plan sane.

``build_fgrams.py --processes 100000`` forked about 3,500 workers and used 22.5 of 24 GB before it
was stopped; ``prepare_data.py --processes 100000`` ran out of file descriptors; ``evaluate.py
--batch-size 100000000`` ran out of memory after loading the model. Process counts are capped at
the CPUs this process may use (said on stderr), and a batch is checked against available memory
before any work.
"""

from __future__ import annotations

import os
import sys

from .errors import fail


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cap_processes(requested: int, flag: str = "--processes") -> int:
    """``requested`` worker processes (0: one per usable CPU), at most one per usable CPU."""
    cpus = usable_cpus()
    if requested <= 0:
        return cpus
    if requested > cpus:
        print(
            f"note: {flag} {requested} is more than the {cpus} CPU(s) here; using {cpus}",
            file=sys.stderr,
        )
        return cpus
    return requested


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (the kernel's estimate of what can be allocated without
    swapping); total physical memory where that is not readable."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(need_bytes: float, what: str, fix: str) -> None:
    """One line, before the work, when ``what`` would need more than the memory available now."""
    have = available_memory_bytes()
    if need_bytes > have:
        fail(
            f"{what} needs about {need_bytes / 2**30:,.1f} GiB, {have / 2**30:,.1f} GiB are available: {fix}"
        )
