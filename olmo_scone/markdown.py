"""Markdown tables: what the reports, the accounting and the benchmarks print."""

from __future__ import annotations

from typing import Any, List


def table(rows: List[List[Any]], header: List[str]) -> str:
    """A GitHub-flavoured markdown table, columns padded to their widest cell."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(r) for r in cols[1:]]
    )
