"""What ``A_fgram`` needs for one batch, built on the host.

The f-gram vocabulary (``[S, K]`` token ids, ``[S]`` lengths) never goes to the accelerator: at the
paper's S = 1B it is 48 GB as int64, more than any rank can spare. Instead the host side of the data
path (the trainer's batch builder, in-loop evaluation, export) turns the f-gram rows of a batch
(from the sidecar or from the host matcher) into:

* ``rows``     ``[U]``     the batch's unique vocabulary rows (ascending),
* ``tokens``   ``[U, K]``  their token ids, left-aligned (padding 0, masked by causality/length),
* ``lengths``  ``[U]``     their lengths,
* ``matched``  ``[B, T]``  which positions end an f-gram,
* ``inverse``  ``[M]``     for each matched position (row-major), its index into ``rows``,

so the bytes the device receives depend on the batch (``U <= B * T``), never on S.
"""

from __future__ import annotations

import dataclasses
import numpy as np
import torch

from .vocab import FgramVocab


@dataclasses.dataclass
class FgramBatch:
    rows: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor
    matched: torch.Tensor
    inverse: torch.Tensor

    @property
    def num_unique(self) -> int:
        return int(self.rows.shape[0])

    def to(self, device, non_blocking: bool = False) -> "FgramBatch":
        return FgramBatch(
            *(t.to(device, non_blocking=non_blocking) for t in dataclasses.astuple(self))
        )


def per_sequence_bytes(seq_len: int, max_n: int) -> int:
    """Upper bound of :class:`FgramBatch` bytes per sequence of ``seq_len`` (every position matched,
    no f-gram shared): int64 rows, K tokens, length and inverse per position, one bool per position."""
    return seq_len * (8 * (max_n + 3) + 1)


def fgram_batch(rows, vocab: FgramVocab) -> FgramBatch:
    """The host tensors for a batch whose positions end f-gram ``rows`` (``[B, T]``, -1: none)."""
    r = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    r = r.astype(np.int64, copy=False)
    matched = r >= 0
    uniq, inverse = np.unique(r[matched], return_inverse=True)
    tokens = np.maximum(np.asarray(vocab.tokens[uniq]), 0).astype(np.int64)
    lengths = np.asarray(vocab.lengths[uniq]).astype(np.int64)
    return FgramBatch(
        torch.from_numpy(uniq),
        torch.from_numpy(tokens.reshape(len(uniq), vocab.max_n)),
        torch.from_numpy(lengths),
        torch.from_numpy(matched),
        torch.from_numpy(inverse.reshape(-1).astype(np.int64)),
    )


def rows_in_instance(rows: np.ndarray, tokens: np.ndarray, matcher, max_n: int) -> np.ndarray:
    """Sidecar ``rows`` of one training instance with its first K-1 positions re-matched inside it.

    The sidecar is tagged over whole files, so at instance positions 0..K-2 it can name an f-gram
    that starts before the instance, which no evaluation or serving forward (they see only the
    instance) can produce. A match ending at position i < K-1 that lies inside the instance has at
    most i+1 tokens, so matching ``tokens[:K-1]`` alone gives exactly the in-instance rows there."""
    k = min(max_n - 1, len(tokens))
    if k <= 0:
        return rows
    out = np.array(rows, dtype=np.int64, copy=True)
    head, _ = matcher.match(np.asarray(tokens[:k]))
    out[:k] = head
    return out
