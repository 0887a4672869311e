"""Peak resident memory, the one way every stage and benchmark reports it."""

from __future__ import annotations

import resource


def peak_rss_gb(children: bool = False) -> float:
    """This process's peak RSS in GiB (Linux reports ``ru_maxrss`` in KiB); with ``children``, the
    largest of it and of any waited-for child process (e.g. a pool's workers)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return peak / 2**20
