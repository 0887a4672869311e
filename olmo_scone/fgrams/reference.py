"""Naive pure-Python f-gram counting and matching.

The independent reference that the tests compare the fast code with, and the "naive
Counter" baseline of the benchmark. Written for obviousness, not speed: do not optimise.
"""

from __future__ import annotations

from collections import Counter


def count_all_ngrams(streams, max_n, eos, pad):
    """Every n-gram (2 <= n <= max_n) of every stream that holds no EOS/pad, counted."""
    c = Counter()
    for s in streams:
        s = [int(x) for x in s]
        for n in range(2, max_n + 1):
            for i in range(len(s) - n + 1):
                g = tuple(s[i : i + n])
                if eos in g or pad in g:
                    continue
                c[g] += 1
    return c


def top_fgrams(counter, num, min_count):
    """The ``num`` best by (count desc, length asc, tokens asc) among those seen >= min_count."""
    items = [(g, n) for g, n in counter.items() if n >= min_count]
    items.sort(key=lambda x: (-x[1], len(x[0]), x[0]))
    return items[:num]


def longest_matches(stream, fgrams, max_n):
    """For each position, (row, length) of the longest f-gram in ``fgrams`` ending there."""
    row_of = {g: r for r, g in enumerate(fgrams)}
    s = [int(x) for x in stream]
    out = []
    for i in range(len(s)):
        found = (-1, 0)
        for n in range(max_n, 1, -1):
            if i - n + 1 >= 0:
                r = row_of.get(tuple(s[i - n + 1 : i + 1]))
                if r is not None:
                    found = (r, n)
                    break
        out.append(found)
    return out
