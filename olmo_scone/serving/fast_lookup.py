"""The host lookup of a decode or prefill step, compiled with numba: match the longest f-gram ending
at each new position and deduplicate the rows, in one call.

Why compiled: :meth:`FgramMatcher.match_batch` is whole-array numpy, which is what a corpus needs,
but a decode step has only B x K tokens, and there the ~40 numpy calls per step (one hash-probe
round per n, ``np.unique``, masks) cost far more than the work (docs/benchmarks.md: 130 us at
batch 1). Here each position walks the f-gram trie itself, probing the same hash index (same keys,
same home slot, same linear probing: :mod:`olmo_scone.fgrams.hashindex`), so the result is the
numpy matcher's, position for position (tests/test_fast_lookup.py). Why numba: it compiles these
loops from Python source at first use (cached on disk after), installs as a wheel from the package
registry, and needs no compiler on the serving machine. It is an optional dependency (``pip
install -e ".[fast]"``, which ``make setup`` does): where numba is missing or refuses the installed
numpy (the GPU kit's image has numpy 2.5, newer than numba 0.60 accepts), :func:`make_lookup`
returns the same interface on the numpy matcher, with the same results, slower.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

try:
    import numba
except ImportError:  # not installed, or refusing this numpy version
    numba = None


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)


@_jit
def _probe(keys, values, shift, mask, max_probe, key):
    slot = np.int64((key * _GOLDEN) >> shift)
    for _ in range(max_probe):
        k = keys[slot]
        if k == key:
            return values[slot]
        if k == _EMPTY:
            return -1
        slot = (slot + 1) & mask
    return -1


@_jit
def _longest(t, end, V, max_n, keys, values, shift, mask, max_probe, node_row, first=0):
    """Row of the longest f-gram ending at ``t[end]`` and starting at ``first`` or later (-1: none):
    for each n, longest first, the trie walk from the n-gram's first token (the pair's node, then
    one child a token); the first n whose walk ends at an f-gram is the answer, so a position
    that matches a long f-gram costs one walk, not one per length."""
    for n in range(min(max_n, end - first + 1), 1, -1):
        start = end - n + 1
        node = _probe(keys, values, shift, mask, max_probe, np.uint64(t[start] * V + t[start + 1]))
        j = start + 2
        while node >= 0 and j <= end:
            node = _probe(keys, values, shift, mask, max_probe, np.uint64((V + node) * V + t[j]))
            j += 1
        # not a trie node: a shorter n-gram ending here starts further right, and is still tried
        if node >= 0 and node_row[node] >= 0:
            return node_row[node]
    return -1


@_jit
def _match_new(tokens, new, V, max_n, keys, values, shift, mask, max_probe, node_row):
    """Rows ``[B, new]`` of the longest f-gram ending at each of the last ``new`` positions of each
    row of ``tokens`` ``[B, T]`` (every row its own stream)."""
    B, T = tokens.shape
    out = np.full((B, new), -1, np.int64)
    for b in range(B):
        for i in range(new):
            out[b, i] = _longest(
                tokens[b], T - new + i, V, max_n, keys, values, shift, mask, max_probe, node_row
            )
    return out


@_jit
def _match_windows(windows, V, max_n, keys, values, shift, mask, max_probe, node_row):
    """Row of the longest f-gram ending at the last token of each window ``[N, K]``; a negative
    token is a boundary (no history there: a request's start), which no f-gram crosses."""
    N, K = windows.shape
    out = np.full(N, -1, np.int64)
    for i in range(N):
        w = windows[i]
        if w[K - 1] < 0:
            continue
        first = K - 1
        while first > 0 and w[first - 1] >= 0:
            first -= 1
        out[i] = _longest(w, K - 1, V, max_n, keys, values, shift, mask, max_probe, node_row, first)
    return out


@_jit
def _dedupe(rows):
    """(unique matched rows, ascending; index into them of each matched position, row-major)."""
    flat = rows.ravel()
    hits = flat[flat >= 0]
    uniq = np.unique(hits)
    inverse = np.searchsorted(uniq, hits)
    return uniq, inverse


def make_lookup(matcher):
    """The compiled lookup when numba is usable, else the numpy one (same results)."""
    return CompiledLookup(matcher) if numba is not None else NumpyLookup(matcher)


class NumpyLookup:
    """:class:`CompiledLookup`'s interface on the numpy matcher (where numba is unavailable)."""

    def __init__(self, matcher):
        self.matcher = matcher

    def match_new(self, tokens: np.ndarray, new: int) -> np.ndarray:
        return self.matcher.match_batch(np.asarray(tokens, dtype=np.int64))[:, -int(new) :]

    def match_batch(self, tokens: np.ndarray) -> np.ndarray:
        return self.matcher.match_batch(np.asarray(tokens, dtype=np.int64))

    def lookup(self, tokens: np.ndarray, new: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _hits_and_unique(self.match_new(tokens, new))

    def match_windows(self, windows: np.ndarray) -> np.ndarray:
        w = np.asarray(windows, dtype=np.int64)
        out = np.full(len(w), -1, np.int64)
        for i, row in enumerate(w):
            if row[-1] < 0:
                continue
            bounds = np.flatnonzero(row < 0)
            valid = row[bounds[-1] + 1 :] if len(bounds) else row
            out[i] = self.matcher.match_batch(valid[None, :])[0, -1]
        return out

    def lookup_windows(self, windows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _hits_and_unique(self.match_windows(windows))


def _hits_and_unique(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    hit = rows >= 0
    uniq, inverse = np.unique(rows[hit], return_inverse=True)
    return hit, uniq, inverse.reshape(-1)


class CompiledLookup:
    """A :class:`~olmo_scone.fgrams.matching.FgramMatcher`'s index, matched by compiled code."""

    def __init__(self, matcher):
        idx = matcher.index
        self.keys, self.values = idx.keys, idx.values
        self.shift = np.uint64(64 - idx.bits)
        self.mask = np.int64(idx.mask)
        self.max_probe = int(idx.max_probe)
        self.node_row = matcher.node_row
        self.V, self.max_n = int(matcher.vocab_size), int(matcher.max_n)
        #: what every compiled routine takes after its tokens, in its order
        self._index = (
            self.V,
            self.max_n,
            self.keys,
            self.values,
            self.shift,
            self.mask,
            self.max_probe,
            self.node_row,
        )

    def match_new(self, tokens: np.ndarray, new: int) -> np.ndarray:
        """``FgramMatcher.match_batch(tokens)[:, -new:]``, computed for those positions only."""
        t = np.ascontiguousarray(tokens, dtype=np.int64)
        return _match_new(t, int(new), *self._index)

    def match_batch(self, tokens: np.ndarray) -> np.ndarray:
        return self.match_new(tokens, np.shape(tokens)[1])

    def lookup(self, tokens: np.ndarray, new: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(matched ``[B, new]`` bool, unique rows, inverse): what a step gathers and where each
        gathered row goes (the runtime's ``prepare``)."""
        rows = self.match_new(tokens, new)
        uniq, inverse = _dedupe(rows)
        return rows >= 0, uniq, inverse

    def match_windows(self, windows: np.ndarray) -> np.ndarray:
        """Row of the longest f-gram ending at the last token of each window ``[N, K]`` (K >=
        ``max_n``; negative tokens: no history), as ``match_new`` would give at that position of
        the whole sequence: an engine's batch, where each token brings its own history."""
        w = np.ascontiguousarray(windows, dtype=np.int64)
        return _match_windows(w, *self._index)

    def lookup_windows(self, windows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`lookup` for windows: (matched ``[N]`` bool, unique rows, inverse)."""
        rows = self.match_windows(windows)
        uniq, inverse = _dedupe(rows)
        return rows >= 0, uniq, inverse
