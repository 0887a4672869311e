"""Batched held-out perplexity of a served model on token files or text files."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import fail
from ..progress import progress


def token_streams(
    spec: str, split: str = "valid", tokenizer: Optional[str] = None
) -> List[np.ndarray]:
    """The token files of ``spec`` (a prepare_data.py directory or a glob; see
    :func:`~olmo_scone.data.sources.open_token_files`), each read whole as one stream."""
    from ..data.sources import open_token_files

    return [
        np.fromfile(f.path, dtype=f.dtype) for f in open_token_files(spec, split, tokenizer).files
    ]


def chunks_from_tokens(streams: List[np.ndarray], seq_len: int) -> np.ndarray:
    """Consecutive ``seq_len`` chunks of each stream (remainders dropped, as OLMo's dataset does)."""
    out = [
        s[: (len(s) // seq_len) * seq_len].reshape(-1, seq_len)
        for s in streams
        if len(s) >= seq_len
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, seq_len), np.int64)


@torch.no_grad()
def perplexity(
    served,
    chunks: np.ndarray,
    batch_size: int = 8,
    max_batches: Optional[int] = None,
    prefetch: bool = True,
) -> Dict[str, float]:
    """Mean next-token loss over every position of every chunk (the first has no target). With
    ``prefetch`` the next batch's f-gram rows are matched, gathered and copied while the model runs."""
    total, count = 0.0, 0
    starts = list(range(0, len(chunks), batch_size))
    if max_batches is not None:
        starts = starts[:max_batches]
    batches = (torch.from_numpy(chunks[i : i + batch_size]) for i in starts)
    for ids, logits in progress(
        served.iter_logits(batches, prefetch=prefetch),
        total=len(starts),
        desc="evaluating",
        unit="batch",
    ):
        logits = logits.float().cpu()
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += ids[:, 1:].numel()
    if count == 0:
        fail("nothing to evaluate: the inputs are shorter than one sequence")
    return {"loss": total / count, "perplexity": math.exp(total / count), "tokens": count}
