"""Resident memory (peak and current), the one way every stage and benchmark reports it."""

from __future__ import annotations

import os
import resource


def rss_gb() -> float:
    """This process's resident memory now, in GiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _vm_hwm_kib() -> int | None:
    """This process's own high-water RSS (Linux ``VmHWM``, KiB). Unlike ``ru_maxrss``, it restarts
    at ``exec``: a process spawned from a large parent does not report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_gb(children: bool = False) -> float:
    """This process's peak RSS in GiB; with ``children``, the largest of it and of any waited-for
    child process (e.g. a pool's workers; ``ru_maxrss`` of children, KiB on Linux)."""
    own = _vm_hwm_kib()
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        own = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return own / 2**20
