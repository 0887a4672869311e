"""The host lookup of one decode step, numpy against compiled (serving/fast_lookup.py), side by side.

A decode step matches the newest token of each of B sequences on its last K tokens, deduplicates
the matched rows and gathers them from the table in RAM. Both variants do exactly that on the same
contexts (windows of real held-out text) into the same table: the numpy matcher
(``NumpyLookup``: ``match_batch`` + ``np.unique``, what the runtime did before) and the compiled
one (``CompiledLookup``), the gather (``torch.index_select`` into a preallocated buffer, the
runtime's RAM path) shared. Rounds alternate the variants so machine noise hits both; the
median over rounds is reported.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import ArgumentParser, positive_int
from ..markdown import table
from .common import machine


def _contexts(tokens: np.ndarray, batch: int, k: int, n: int, seed: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - k, size=(n, batch))
    return [np.stack([tokens[s : s + k] for s in row]).astype(np.int64) for row in starts]


def step(lookup, tbl: torch.Tensor, ctx: np.ndarray) -> int:
    """One decode step's host work: match the newest tokens, deduplicate, gather the rows."""
    hit, uniq, inverse = lookup.lookup(ctx, 1)
    out = torch.empty((len(uniq), tbl.shape[1]), dtype=tbl.dtype)
    torch.index_select(tbl, 0, torch.from_numpy(uniq), out=out)
    return len(uniq)


def measure(matcher, lookup, tbl, tokens, batch: int, iters: int, rounds: int) -> Dict:
    """Median microseconds per step of each variant, and the share of positions matched."""
    from ..serving.fast_lookup import NumpyLookup

    ctxs = _contexts(tokens, batch, matcher.max_n, iters, seed=batch)
    variants = {"numpy": NumpyLookup(matcher), "compiled": lookup}
    for ctx in ctxs[:20]:  # warm-up (and numba's compilation, cached on disk after the first run)
        for v in variants.values():
            step(v, tbl, ctx)
    times: Dict[str, List[float]] = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants.items())
        for name, v in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            for ctx in ctxs:
                step(v, tbl, ctx)
            times[name].append((time.perf_counter() - t0) / len(ctxs) * 1e6)
    hits = np.mean([(matcher.match_batch(c)[:, -1] >= 0).mean() for c in ctxs[:200]])
    return {
        "batch": batch,
        "numpy_us": statistics.median(times["numpy"]),
        "compiled_us": statistics.median(times["compiled"]),
        "matched": float(hits),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..data.sources import open_token_files
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import load_vocab
    from ..serving.fast_lookup import CompiledLookup

    p = ArgumentParser(prog="benchmark_lookup.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--vocab", required=True, type=Path, help="an f-gram vocabulary (build_fgrams.py)"
    )
    p.add_argument(
        "--tokens",
        required=True,
        help="prepared token directory (its valid split gives the contexts)",
    )
    p.add_argument("--d-model", type=positive_int, default=2048, help="table width (the paper's d)")
    p.add_argument(
        "--batches", nargs="+", type=positive_int, default=[1, 16, 64], help="decode batch sizes"
    )
    p.add_argument("--iters", type=positive_int, default=2000, help="steps timed per round")
    p.add_argument(
        "--rounds", type=positive_int, default=5, help="rounds, alternating the variants"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    files = open_token_files(a.tokens, "valid")
    tokens = np.concatenate(
        [np.asarray(np.memmap(f.path, dtype=f.dtype, mode="r")) for f in files.files]
    )
    vocab = load_vocab(a.vocab)
    matcher = FgramMatcher(vocab, files.tokenizer["vocab_size"])
    lookup = CompiledLookup(matcher)
    # random bits, written: a zero-filled table would map every page to one zero page
    tbl = torch.empty((len(vocab), a.d_model), dtype=torch.bfloat16)
    tbl.view(torch.int16).random_(-(2**15), 2**15)
    rows = [measure(matcher, lookup, tbl, tokens, b, a.iters, a.rounds) for b in a.batches]
    print(
        f"# {machine()}; {len(vocab):,} f-grams (K = {matcher.max_n}), table {len(vocab):,} x {a.d_model} bf16 in RAM, 1 thread"
    )
    print(
        table(
            [
                [
                    r["batch"],
                    f"{r['numpy_us']:.1f}",
                    f"{r['compiled_us']:.1f}",
                    f"{r['numpy_us'] / r['compiled_us']:.1f}x",
                    f"{100 * r['matched']:.0f}%",
                ]
                for r in rows
            ],
            ["batch", "numpy us/step", "compiled us/step", "speed-up", "positions matched"],
        )
    )
    if a.json is not None:
        a.json.write_text(
            json.dumps({"fgrams": len(vocab), "d_model": a.d_model, "rows": rows}, indent=2)
        )
    return 0
