"""KV-cache generation for served models (SCONE artifacts and baselines alike).

Each decode step feeds only the new token: its f-gram is matched on the host from the last K
tokens of its sequence, its embedding gathered from the table, and OLMo's key/value cache carries
the rest. Prompts are batched by length: the models use learned absolute positions, so a
left-padded prompt would see shifted positions; equal-length groups need no padding at all.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch


def _sample(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = (
            probs.cumsum(dim=-1) - probs > top_p
        )  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate(
    served,
    prompts: List[List[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: Optional[int] = None,
    seed: int = 0,
    use_cache: bool = True,
) -> List[List[int]]:
    """Continuations (token ids, without the prompt) of every prompt, in the prompts' order."""
    gen = torch.Generator().manual_seed(seed)
    by_len: Dict[int, List[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    out: List[List[int]] = [[] for _ in prompts]
    max_len = served.cfg.model.max_sequence_length
    for n, idxs in sorted(by_len.items()):
        if n + max_new_tokens > max_len:
            from ..errors import fail

            fail(
                f"prompt of {n} tokens + {max_new_tokens} new tokens exceeds the model's context ({max_len})"
            )
        seqs = torch.tensor([prompts[i] for i in idxs], dtype=torch.long)
        past = None
        done = torch.zeros(len(idxs), dtype=torch.bool)
        for step in range(max_new_tokens):
            if use_cache and past is not None:
                logits, past = served.step(seqs, past)
            else:
                logits, past = (
                    served.step(seqs, None) if use_cache else (served.logits(seqs)[:, -1], None)
                )
            nxt = _sample(logits, temperature, top_k, top_p, gen).cpu()
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            if eos_token_id is not None and bool(done.all()):
                break
        for j, i in enumerate(idxs):
            cont = seqs[j, n:].tolist()
            if eos_token_id is not None and eos_token_id in cont:
                cont = cont[: cont.index(eos_token_id) + 1]
            out[i] = cont
    return out
