"""Each token's history inside a serving engine, read back from where the engine keeps it.

An engine batches the new tokens of many requests (prefill chunks and decode steps mixed) and
hands the model only those tokens and their positions. Matching the longest f-gram ending at a
token needs the K-1 tokens before it in its own request, most of them computed in earlier steps.
As vLLM's Engram does, the history is kept per KV-cache slot: every token written to the KV cache
also writes its id to a host array at the same slot, and a token's history is read back through
its request's block table (position q lives at ``block_table[q // block_size] * block_size + q %
block_size``). The engine pins a position to a slot for as long as the KV cache holds it, so this
is right through chunked prefill, decoding, preemption (a recomputed request rewrites its slots)
and prefix caching (a cached block holds the same tokens, written by the request that computed it).
A slot never written here (KV cache loaded from another engine instance) reads as no history.
"""

from __future__ import annotations

import numpy as np


class SlotTokenHistory:
    """The token id last written to each KV-cache slot (host memory, 8 bytes a slot)."""

    def __init__(self, window: int):
        self.window = int(window)
        self.tokens = np.full(0, -1, np.int64)

    def _grow(self, slots: np.ndarray) -> None:
        need = int(slots.max()) + 1 if len(slots) else 0
        if need > len(self.tokens):
            grown = np.full(max(need, 2 * len(self.tokens)), -1, np.int64)
            grown[: len(self.tokens)] = self.tokens
            self.tokens = grown

    def windows(
        self,
        input_ids: np.ndarray,
        positions: np.ndarray,
        query_start_loc: np.ndarray,
        block_table: np.ndarray,
        slot_mapping: np.ndarray,
        block_size: int,
    ) -> np.ndarray:
        """Record the step's tokens at their slots, then return each token's window ``[N, window]``
        of its request's tokens ending with it (-1 before the request's start).

        ``query_start_loc`` ``[R+1]`` splits the flat batch into requests, row ``r`` of
        ``block_table`` is request ``r``'s, ``slot_mapping`` ``[N]`` is where each new token's KV
        goes. A slot_mapping that disagrees with the block table stops the step: the engine lays
        out its cache in a way this reader does not know, and matching would be silently wrong."""
        qsl = np.asarray(query_start_loc, dtype=np.int64)
        n = int(qsl[-1])
        ids = np.asarray(input_ids[:n], dtype=np.int64)
        pos = np.asarray(positions[:n], dtype=np.int64)
        slots = np.asarray(slot_mapping[:n], dtype=np.int64)
        req = np.repeat(np.arange(len(qsl) - 1), np.diff(qsl))
        table = np.asarray(block_table, dtype=np.int64)
        bs = int(block_size)
        own = table[req, pos // bs] * bs + pos % bs
        if not np.array_equal(own, slots):
            bad = int(np.flatnonzero(own != slots)[0])
            raise RuntimeError(
                f"olmo-scone: the engine's slot mapping ({int(slots[bad])}) disagrees with its "
                f"block table ({int(own[bad])}) at token {bad}; f-gram matching cannot read history"
            )
        self._grow(slots)
        self.tokens[slots] = ids
        out = np.full((n, self.window), -1, np.int64)
        for j in range(self.window):
            q = pos - (self.window - 1 - j)
            ok = q >= 0
            qs = q[ok]
            out[ok, j] = self.tokens[table[req[ok], qs // bs] * bs + qs % bs]
        return out
