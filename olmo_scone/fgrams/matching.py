"""Longest f-gram ending at every position: exact, in numpy (corpora) and torch (batches).

The vocabulary is turned into a trie whose nodes are all prefixes (length >= 2) of
all f-grams. A node's key is ``t0 * V + t1`` for a pair, and ``(V + parent) * V + t``
for a longer prefix, so one :class:`~.hashindex.HashIndex` holds them all without
collisions. Walking the text once per n: the node of the n-gram ending at ``i`` is
the child of the node of the (n-1)-gram ending at ``i - 1`` by token ``t[i]``. The
longest f-gram ending at ``i`` is the longest n whose node is itself an f-gram.

Nothing is hashed approximately: every probe compares full 64-bit keys, so a match
is never false. f-grams never contain EOS or pad, so no match spans a document
boundary (every document ends in EOS).

A matcher is saved as four ``.npy`` arrays (:meth:`FgramMatcher.save`) and opened either into RAM
or memory-mapped (:meth:`FgramMatcher.load`): at 1B f-grams the index is 76.7 GB, so a served
artifact keeps it on NVMe beside the table and a lookup touches only the pages it probes.
"""

from __future__ import annotations

import mmap as _mmap
from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import fail
from .hashindex import HashIndex
from .vocab import FgramVocab

#: the arrays of a saved matcher: attribute -> (file, dtype)
MATCHER_FILES = {
    "index_keys": ("index-keys.npy", np.uint64),
    "index_values": ("index-values.npy", np.int64),
    "node_row": ("node-row.npy", np.int64),
    "lengths": ("lengths.npy", np.int8),
}


class FgramMatcher:
    def __init__(self, vocab: FgramVocab, vocab_size: int):
        self.vocab_size = V = int(vocab_size)
        self.max_n = vocab.max_n
        self.num_fgrams = len(vocab)
        tokens = vocab.tokens.astype(np.int64)
        lengths = vocab.lengths.astype(np.int64)
        if len(tokens) and (tokens.max() >= V):
            raise ValueError(f"f-gram token id {tokens.max()} >= tokenizer vocab size {V}")
        keys_all, node_row = [], []
        node_of_row = np.full(len(tokens), -1, dtype=np.int64)
        next_id = 0
        for n in range(2, self.max_n + 1):
            rows = np.flatnonzero(lengths >= n)
            if not len(rows):
                break
            if n == 2:
                keys = tokens[rows, 0] * V + tokens[rows, 1]
            else:
                keys = (V + node_of_row[rows]) * V + tokens[rows, n - 1]
            uniq, inverse = np.unique(keys, return_inverse=True)
            ids = next_id + np.arange(len(uniq))
            next_id += len(uniq)
            node_of_row[rows] = ids[inverse]
            is_fgram = np.full(len(uniq), -1, dtype=np.int64)
            ends_here = lengths[rows] == n
            is_fgram[inverse[ends_here]] = rows[ends_here]
            keys_all.append(uniq)
            node_row.append(is_fgram)
        keys = np.concatenate(keys_all) if keys_all else np.zeros(0, np.int64)
        self.node_row = np.concatenate(node_row) if node_row else np.zeros(0, np.int64)
        self.index = HashIndex.build(keys.astype(np.uint64))
        self.lengths = lengths.astype(np.int8)

    @property
    def num_nodes(self) -> int:
        return len(self.node_row)

    # ---- on disk -----------------------------------------------------------------------
    def _arrays(self) -> Dict[str, np.ndarray]:
        return {
            "index_keys": self.index.keys,
            "index_values": self.index.values,
            "node_row": self.node_row,
            "lengths": self.lengths,
        }

    def save(self, folder: Path) -> Dict:
        """Write the arrays (atomically, one file each) into ``folder``; returns what a manifest
        records to open and check them: sizes, the index's shape and each file's sha256."""
        from ..atomic import atomic_file, sha256_file

        folder = Path(folder)
        files = {}
        for name, arr in self._arrays().items():
            fname, dtype = MATCHER_FILES[name]
            with atomic_file(folder / fname) as f:
                np.save(f, np.ascontiguousarray(arr, dtype=dtype), allow_pickle=False)
            files[name] = {
                "file": fname,
                "length": int(len(arr)),
                "sha256": sha256_file(folder / fname),
            }
        return {
            "vocab_size": self.vocab_size,
            "max_n": self.max_n,
            "num_fgrams": self.num_fgrams,
            "bits": self.index.bits,
            "max_probe": self.index.max_probe,
            "files": files,
        }

    @classmethod
    def load(
        cls, folder: Path, meta: Dict, mmap: bool = False, verify: bool = True
    ) -> "FgramMatcher":
        """A saved matcher, in RAM or memory-mapped (``mmap``: nothing is read up front; lookups
        fault in the pages they probe). ``verify`` checks each file's sha256 (reads it once);
        sizes and dtypes are always checked."""
        from ..atomic import sha256_file

        folder = Path(folder)
        arrays = {}
        for name, (fname, dtype) in MATCHER_FILES.items():
            entry = meta["files"][name]
            path = folder / entry["file"]
            if not path.is_file():
                fail(f"matcher index file missing: {path}")
            if verify and sha256_file(path) != entry["sha256"]:
                fail(
                    f"{path} does not match the sha256 in the manifest: it is corrupt (re-export the artifact)"
                )
            try:
                arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                fail(
                    f"{path} is unreadable ({e}); it is truncated or corrupt: re-export the artifact"
                )
            if arr.dtype != dtype or arr.shape != (int(entry["length"]),):
                fail(
                    f"{path} holds {arr.dtype}{list(arr.shape)}, the manifest lists {np.dtype(dtype)}[{entry['length']}]"
                )
            if (
                mmap
                and name.startswith("index_")
                and hasattr(arr, "_mmap")
                and hasattr(_mmap, "MADV_RANDOM")
            ):
                arr._mmap.madvise(
                    _mmap.MADV_RANDOM
                )  # probes are random: readahead would only waste I/O
            # a plain ndarray over the same mapping: np.memmap's subclass hooks cost ~50% per lookup
            arrays[name] = arr.view(np.ndarray) if mmap else arr
        self = cls.__new__(cls)
        self.vocab_size, self.max_n, self.num_fgrams = (
            int(meta["vocab_size"]),
            int(meta["max_n"]),
            int(meta["num_fgrams"]),
        )
        self.index = HashIndex(
            arrays["index_keys"], arrays["index_values"], int(meta["bits"]), int(meta["max_probe"])
        )
        self.node_row, self.lengths = arrays["node_row"], arrays["lengths"]
        return self

    def match(self, tokens: np.ndarray, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
        """(row int32 [N], length int8 [N]) of the longest f-gram ending at each position of a 1-D stream."""
        t_all = np.asarray(tokens)
        n_all = len(t_all)
        rows = np.full(n_all, -1, dtype=np.int32)
        lens = np.zeros(n_all, dtype=np.int8)
        ctx = self.max_n - 1
        for start in range(0, n_all, chunk):
            lo = max(0, start - ctx)
            r, n = self._match_block(np.asarray(t_all[lo : start + chunk], dtype=np.int64))
            rows[start : start + chunk] = r[start - lo :]
            lens[start : start + chunk] = n[start - lo :]
        return rows, lens

    def _match_block(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V = self.vocab_size
        n_pos = len(t)
        best = np.full(n_pos, -1, dtype=np.int32)
        if n_pos < 2 or self.num_nodes == 0:
            return best, np.zeros(n_pos, dtype=np.int8)
        node = np.full(n_pos, -1, dtype=np.int64)
        node[1:] = self.index.lookup((t[:-1] * V + t[1:]).astype(np.uint64))
        pos = np.flatnonzero(node >= 0)
        r = self.node_row[node[pos]]
        best[pos[r >= 0]] = r[r >= 0]
        for n in range(3, self.max_n + 1):
            pos = pos[pos + 1 < n_pos] + 1  # positions whose (n-1)-gram ending at pos-1 is a node
            if not len(pos):
                break
            child = self.index.lookup(((V + node[pos - 1]) * V + t[pos]).astype(np.uint64))
            node = np.full(n_pos, -1, dtype=np.int64)
            node[pos] = child
            pos = pos[child >= 0]
            r = self.node_row[node[pos]]
            best[pos[r >= 0]] = r[r >= 0]
        lens = np.where(best >= 0, self.lengths[np.maximum(best, 0)], 0).astype(np.int8)
        return best, lens

    def match_batch(self, tokens: np.ndarray) -> np.ndarray:
        """Rows (int64 ``[B, T]``, -1 = none) of the longest f-gram ending at each position of each
        row of a ``[B, T]`` batch, every row its own stream: one pass for the whole batch, which is
        what serving needs per decode step (``T`` = the last K tokens of each sequence)."""
        t = np.asarray(tokens, dtype=np.int64)
        B, T = t.shape
        best = np.full((B, T), -1, dtype=np.int64)
        if T < 2 or self.num_nodes == 0:
            return best
        V = self.vocab_size
        node = np.full((B, T), -1, dtype=np.int64)
        node[:, 1:] = self.index.lookup(
            (t[:, :-1] * V + t[:, 1:]).astype(np.uint64).ravel()
        ).reshape(B, T - 1)
        for n in range(2, self.max_n + 1):
            if n > 2:
                prev = node[:, :-1]
                child = self.index.lookup(
                    ((V + np.maximum(prev, 0)) * V + t[:, 1:]).astype(np.uint64).ravel()
                )
                node = np.full((B, T), -1, dtype=np.int64)
                node[:, 1:] = np.where(prev >= 0, child.reshape(B, T - 1), -1)
            r = np.where(node >= 0, self.node_row[np.maximum(node, 0)], -1)
            best = np.where(r >= 0, r, best)
        return best

    def to_torch(self, device=None) -> "TorchFgramMatcher":
        return TorchFgramMatcher(self, device)


class TorchFgramMatcher:
    """The same matcher on a torch device, for ``[B, T]`` batches (each row its own stream)."""

    def __init__(self, m: FgramMatcher, device=None):
        import torch

        self.vocab_size, self.max_n = m.vocab_size, m.max_n
        self.index = m.index.to_torch(device)
        self.node_row = torch.from_numpy(m.node_row).to(device)
        self.lengths = torch.from_numpy(m.lengths.astype(np.int64)).to(device)

    def match(self, tokens):
        """``tokens`` int ``[B, T]`` -> (rows int64 ``[B, T]``, -1 = none; lengths int64 ``[B, T]``)."""
        import torch

        V = self.vocab_size
        t = tokens.long()
        B, T = t.shape
        best = torch.full_like(t, -1)
        if T < 2 or self.node_row.numel() == 0:
            return best, torch.zeros_like(t)
        none = torch.full((B, 1), -1, dtype=torch.long, device=t.device)
        node = torch.cat([none, self.index.lookup(t[:, :-1] * V + t[:, 1:])], dim=1)
        for n in range(2, self.max_n + 1):
            if n > 2:
                prev = node[:, :-1]
                child = self.index.lookup((V + prev.clamp(min=0)) * V + t[:, 1:])
                node = torch.cat([none, torch.where(prev >= 0, child, -1)], dim=1)
            r = torch.where(node >= 0, self.node_row[node.clamp(min=0)], -1)
            best = torch.where(r >= 0, r, best)
        lens = torch.where(best >= 0, self.lengths[best.clamp(min=0)], 0)
        return best, lens
