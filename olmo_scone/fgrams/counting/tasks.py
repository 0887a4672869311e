"""The work of a count, as pure functions that any executor runs: arrays in, arrays out.

No task keeps state between passes. A counting task of pass n rebuilds, from its chunk's tokens and
the published indexes of passes 2..n-1, the id of the surviving (n-1)-gram ending at each position;
nothing per position is stored between passes, so any task can be retried on any node.

Every task returns a tuple whose last element is small (statistics or a small result): the executor
brings that one back to the driver; the others (partial counts, survivors, indexes) stay in the
executor's store (Ray's object store, or spill files for local processes).
"""

from __future__ import annotations

import math
import os
import socket
from typing import Dict, List, Tuple

import numpy as np

from ...errors import fail
from ...peak_memory import peak_rss_gb
from ..hashindex import HashIndex, _home
from .plan import Chunk

Arrays = Tuple[np.ndarray, np.ndarray]  # (keys uint64 sorted unique, counts)
IndexArrays = Tuple[np.ndarray, np.ndarray, int, int]  # a HashIndex: keys, values, bits, max_probe


def worker_stats() -> Dict[str, object]:
    """Which process ran a task and its peak RSS so far: the driver reports each worker's peak."""
    return {"node": _node_id(), "pid": os.getpid(), "peak_rss_gb": round(peak_rss_gb(), 4)}


def _node_id() -> str:
    """The Ray node running this task (several may share a host), else the host name."""
    import sys

    ray = sys.modules.get("ray")  # imported only where Ray runs the task
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()[:12]
    return socket.gethostname()


def read_chunk(chunk: Chunk, context: int) -> Tuple[np.ndarray, int]:
    """The chunk's tokens with ``context`` tokens before it, and where the chunk starts in them."""
    lo = max(0, chunk.start - context)
    try:
        mm = np.memmap(chunk.path, dtype=np.dtype(chunk.dtype), mode="r")
    except OSError as e:
        fail(
            f"cannot read token file {chunk.path} on node {socket.gethostname()}: {e.strerror or e}; "
            "every node must see --tokens at the same path (shared storage)"
        )
    if len(mm) < chunk.end:
        fail(
            f"token file {chunk.path} on node {socket.gethostname()} holds {len(mm):,} tokens, the plan "
            f"expects {chunk.end:,}: every node must see the same --tokens"
        )
    return np.asarray(mm[lo : chunk.end], dtype=np.int64), chunk.start - lo


def bigram_keys(t: np.ndarray, vocab: int, eos: int, pad: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keys ``t[i-1] * V + t[i]`` of the pairs ending at positions 1..len-1, and whether each is a
    candidate (holds neither EOS nor pad)."""
    ok = (t != eos) & (t != pad)
    return t[:-1] * vocab + t[1:], ok[:-1] & ok[1:]


def surviving_ids(
    t: np.ndarray, vocab: int, eos: int, pad: int, indexes: List[HashIndex]
) -> np.ndarray:
    """ids[j]: the id of the surviving n-gram ending at position j (-1: none), for the largest n the
    ``indexes`` (of passes 2, 3, ...) reach. An (n+1)-gram's key is ``id(n-prefix) * V + last``."""
    ids = np.full(len(t), -1, dtype=np.int64)
    keys, ok = bigram_keys(t, vocab, eos, pad)
    pos = np.flatnonzero(ok) + 1
    ids[pos] = indexes[0].lookup(keys[ok].astype(np.uint64))
    for index in indexes[1:]:
        prev = ids
        ids = np.full(len(t), -1, dtype=np.int64)
        pos = np.flatnonzero((prev[:-1] >= 0) & (prev[1:] >= 0)) + 1
        ids[pos] = index.lookup(
            prev[pos - 1].astype(np.uint64) * np.uint64(vocab) + t[pos].astype(np.uint64)
        )
    return ids


def candidate_keys(
    t: np.ndarray, off: int, n: int, vocab: int, eos: int, pad: int, indexes: List[HashIndex]
) -> np.ndarray:
    """The keys of pass ``n``'s candidates ending at positions >= ``off``: every clean pair for n = 2;
    an n-gram whose (n-1)-prefix and (n-1)-suffix both survived pass n-1 otherwise (Apriori)."""
    if n == 2:
        keys, ok = bigram_keys(t, vocab, eos, pad)
        ok[: max(0, off - 1)] = False
        return keys[ok].astype(np.uint64)
    prev = surviving_ids(t, vocab, eos, pad, indexes)
    cand = (prev[:-1] >= 0) & (prev[1:] >= 0)
    cand[: max(0, off - 1)] = False
    pos = np.flatnonzero(cand) + 1
    return prev[pos - 1].astype(np.uint64) * np.uint64(vocab) + t[pos].astype(np.uint64)


def unique_counts(keys: np.ndarray) -> Arrays:
    if len(keys) and keys.max() < 2**32:  # sorting 32-bit keys is about twice as fast
        uniq, counts = np.unique(keys.astype(np.uint32), return_counts=True)
        return uniq.astype(np.uint64), counts
    return np.unique(keys, return_counts=True)


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    return _home(keys, int(math.log2(partitions)))


def count_chunk(
    chunk: Chunk,
    n: int,
    vocab: int,
    eos: int,
    pad: int,
    context: int,
    partitions: int,
    *indexes: IndexArrays,
):
    """Map: pass ``n``'s candidate counts in one chunk, split by hash partition. Returns one
    ``(keys, counts uint32)`` per partition, then statistics."""
    t, off = read_chunk(chunk, context)
    keys = candidate_keys(t, off, n, vocab, eos, pad, [HashIndex(*ix) for ix in indexes])
    uniq, counts = unique_counts(keys)
    part = partition_of(uniq, partitions)
    out = []
    for p in range(partitions):
        sel = part == p
        out.append((uniq[sel], counts[sel].astype(np.uint32)))
    stats = {
        "chunk": chunk.index,
        "candidates": int(len(keys)),
        "distinct": int(len(uniq)),
        **worker_stats(),
    }
    return (*out, stats)


def merge_counts(partials: List[Arrays], min_count: int) -> Arrays:
    """Sum partial counts of one partition and keep the keys seen >= ``min_count`` times (sorted)."""
    if not partials:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    keys = np.concatenate([k for k, _ in partials]).astype(np.uint64, copy=False)
    counts = np.concatenate([c.astype(np.uint64) for _, c in partials])
    if not len(keys):
        return keys, counts
    order = np.argsort(keys.astype(np.uint32)) if keys.max() < 2**32 else np.argsort(keys)
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    keys, counts = keys[starts], np.add.reduceat(counts, starts)
    keep = counts >= min_count
    return keys[keep], counts[keep]


def merge_partition(min_count: int, *partials: Arrays):
    """Reduce: one partition of one pass. Returns its survivors, then their size and the histogram
    of their counts (what the partitioned ranking cuts on) with statistics."""
    keys, counts = merge_counts(list(partials), min_count)
    values, freq = np.unique(counts, return_counts=True)
    summary = {
        "size": int(len(keys)),
        "hist_counts": values.astype(np.int64),
        "hist_freq": freq.astype(np.int64),
        **worker_stats(),
    }
    return (keys, counts), summary


def build_pass_index(vocab: int, *survivors: Arrays):
    """Publish a pass: every survivor's key in a hash index whose values are ids in sorted key order.

    Sorted-order ids make the next pass's keys sort like their tokens, so within one length key
    order is token order: the ranking's tie-break (tokens ascending) is a key comparison."""
    keys = (
        np.sort(np.concatenate([k for k, _ in survivors])) if survivors else np.zeros(0, np.uint64)
    )
    if len(keys) and (len(keys) - 1) * vocab + vocab - 1 >= 2**64 - 1:
        fail(
            f"{len(keys):,} survivors of one pass times a vocabulary of {vocab:,} overflow 64-bit keys"
        )
    index = HashIndex.build(keys)
    return (index.keys, index.values, index.bits, index.max_probe), {
        "size": int(len(keys)),
        **worker_stats(),
    }


def tie_keys(count: int, limit: int, survivors: Arrays):
    """The ``limit`` smallest keys of one partition seen exactly ``count`` times."""
    keys, counts = survivors
    return (keys[counts == count][:limit],), {}


def kth_key(k: int, *tie_parts: Tuple[np.ndarray]):
    """The k-th smallest (1-based) of the tie keys of all partitions."""
    keys = np.concatenate([p[0] for p in tie_parts])
    return ({"key": int(np.partition(keys, k - 1)[k - 1])},)


def select_winners(n: int, cut: Dict[str, int], survivors: Arrays, index: IndexArrays):
    """The survivors of one partition of pass ``n`` that rank within the top S (see ranking.py), with
    their ids (for decoding the next length's prefixes)."""
    keys, counts = survivors
    c, length, last_key = cut["count"], cut["length"], cut["key"]
    win = counts > c
    if n < length:
        win |= counts == c
    elif n == length:
        win |= (counts == c) & (keys <= np.uint64(last_key))
    keys, counts = keys[win], counts[win]
    ids = HashIndex(*index).lookup(keys)
    return ({"keys": keys.copy(), "counts": counts.astype(np.int64), "ids": ids},)
