"""Ranking all lengths together, partitioned: no task holds every survivor.

Order: by count (descending), then length (ascending), then tokens (lexicographically ascending).
With this order every prefix and suffix of an f-gram ranks before it, so the top S are closed under
prefixes and suffixes: decoding an n-gram's prefix id only needs the winners of length n-1.

The top S are found without gathering the survivors. Each merged partition reports the histogram of
its counts; summed over partitions and lengths, it fixes the cut: the count ``c`` and length ``L``
of the S-th f-gram, and how many of the (c, L) group make it. When only part of that group does,
the last key that makes it is the k-th smallest key of the group (within one length, key order is
token order: see ``build_pass_index``). Each partition then keeps what ranks at or above the cut.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

#: a cut that keeps every survivor (fewer survivors than S)
KEEP_ALL = {"count": 0, "length": 0, "key": 0}


def group_sizes(summaries: Dict[int, List[Dict]]) -> Counter:
    """{(count, length): how many survivors} from each pass's partition summaries."""
    groups: Counter = Counter()
    for n, parts in summaries.items():
        for s in parts:
            for c, f in zip(s["hist_counts"], s["hist_freq"]):
                groups[(int(c), n)] += int(f)
    return groups


def find_cut(groups: Counter, num: int) -> Tuple[Optional[Dict[str, int]], int]:
    """(cut, take): the group ``(count, length)`` holding the ``num``-th f-gram and how many of it
    make the top ``num``; (None, 0) when every survivor does."""
    before = 0
    for c, n in sorted(groups, key=lambda g: (-g[0], g[1])):
        size = groups[(c, n)]
        if before + size >= num:
            return {"count": c, "length": n, "key": -1}, num - before
        before += size
    return None, 0


def rank_fgrams(
    tokens: np.ndarray, lengths: np.ndarray, counts: np.ndarray, num: int
) -> np.ndarray:
    """Row order of the top ``num`` by (count desc, length asc, tokens asc)."""
    if len(counts) <= num:
        cand = np.arange(len(counts))
    else:
        threshold = np.partition(counts, len(counts) - num)[len(counts) - num]
        cand = np.flatnonzero(counts >= threshold)
    keys = [tokens[cand, j] for j in range(tokens.shape[1] - 1, -1, -1)]
    order = np.lexsort(keys + [lengths[cand], -counts[cand]])
    return cand[order[:num]]


def decode_winners(
    winners: Dict[int, List[Dict]], vocab_size: int, max_n: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token rows (int32 [S, K], -1 padded), lengths and counts of the winners, in rank order.

    A key of length n > 2 is ``id(prefix) * V + last``; the prefix is a winner of length n-1 (closure),
    found by its id among them."""
    V = np.uint64(vocab_size)
    all_tokens, all_len, all_counts = [], [], []
    prev_ids = prev_rows = None
    for n in sorted(winners):
        parts = winners[n]
        keys = np.concatenate([p["keys"] for p in parts]).astype(np.uint64)
        counts = np.concatenate([p["counts"] for p in parts]).astype(np.int64)
        ids = np.concatenate([p["ids"] for p in parts]).astype(np.int64)
        order = np.argsort(ids)
        keys, counts, ids = keys[order], counts[order], ids[order]
        hi, lo = (keys // V).astype(np.int64), (keys % V).astype(np.int64)
        if n == 2:
            rows = np.stack([hi, lo], axis=1)
        else:
            at = np.searchsorted(prev_ids, hi)
            if len(hi) and (at.max() >= len(prev_ids) or np.any(prev_ids[at] != hi)):
                raise AssertionError(
                    f"a winning {n}-gram's prefix is not among the winners of length {n - 1}"
                )
            rows = np.concatenate([prev_rows[at], lo[:, None]], axis=1)
        prev_ids, prev_rows = ids, rows
        padded = np.full((len(rows), max_n), -1, dtype=np.int32)
        padded[:, :n] = rows
        all_tokens.append(padded)
        all_len.append(np.full(len(rows), n, dtype=np.int8))
        all_counts.append(counts)
    if not all_tokens:
        return np.zeros((0, max_n), np.int32), np.zeros(0, np.int8), np.zeros(0, np.int64)
    tokens, lengths, counts = (
        np.concatenate(all_tokens),
        np.concatenate(all_len),
        np.concatenate(all_counts),
    )
    top = rank_fgrams(tokens, lengths, counts, len(counts))
    return tokens[top], lengths[top], counts[top]
