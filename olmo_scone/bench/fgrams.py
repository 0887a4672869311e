"""``scripts/benchmark_fgrams.py``: counting and matching throughput on real text, side by side.

Counting (K = 5) is timed for three implementations in one run, each in a fresh process
(so peak memory is its own): ours (:mod:`olmo_scone.fgrams.counting`), a straightforward
``numpy.unique`` per n, and the naive ``collections.Counter`` reference. The naive one
runs on a prefix of the corpus (it would take minutes on all of it); throughput is
per token, so the ratio stays meaningful. Matching is timed for vocabularies of 1M and
(with ``--scale``) 10M f-grams. ``--scale`` also builds a 10M-f-gram vocabulary from a
>= 100M-token corpus made by repeating the real text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..fgrams.counting import CountSettings, TokenSource, count_fgrams
from .common import REPO, build_vocab, isolated, machine, prepared_real_text, repeat_corpus, table


def _streams(paths: List[str], dtype: str, limit: Optional[int] = None) -> List[np.ndarray]:
    out, left = [], limit
    for p in paths:
        a = np.fromfile(p, dtype=dtype)
        if left is not None:
            a = a[:left]
            left -= len(a)
        out.append(a)
        if left is not None and left <= 0:
            break
    return out


def run_ours(paths, dtype, vocab, eos, pad, num, min_count, processes, memory_gb) -> Dict:
    srcs = [TokenSource(Path(p), np.dtype(dtype), np.memmap(p, dtype=dtype, mode="r").shape[0]) for p in paths]
    r = count_fgrams(srcs, vocab, eos, pad, CountSettings(5, num, min_count, processes, memory_gb))
    return {"tokens": r.stats["corpus_tokens"], "fgrams": len(r.counts), "frequent": r.stats["frequent_ngrams"],
            "top": [tuple(map(int, t[:n])) for t, n in zip(r.tokens[:1000], r.lengths[:1000])]}  # fmt: skip


def run_numpy_unique(paths, dtype, eos, pad, num, min_count) -> Dict:
    """The straightforward vectorized baseline: all windows of each n, ``np.unique(axis=0)``."""
    from numpy.lib.stride_tricks import sliding_window_view

    grams, counts, total = [], [], 0
    streams = _streams(paths, dtype)
    for n in range(2, 6):
        per_n = []
        for s in streams:
            s = s.astype(np.int64)
            total += len(s) if n == 2 else 0
            w = sliding_window_view(s, n)
            ok = ~np.isin(w, [eos, pad]).any(axis=1)
            per_n.append(w[ok])
        u, c = np.unique(np.concatenate(per_n), axis=0, return_counts=True)
        keep = c >= min_count
        for row, cnt in zip(u[keep], c[keep]):
            grams.append(tuple(int(x) for x in row))
            counts.append(int(cnt))
    order = sorted(range(len(grams)), key=lambda i: (-counts[i], len(grams[i]), grams[i]))[:num]
    return {"tokens": total, "fgrams": len(order), "frequent": len(grams), "top": [grams[i] for i in order[:1000]]}


def run_naive(paths, dtype, eos, pad, num, min_count, limit) -> Dict:
    from ..fgrams.reference import count_all_ngrams, top_fgrams

    streams = _streams(paths, dtype, limit)
    top = top_fgrams(count_all_ngrams(streams, 5, eos, pad), num, min_count)
    return {"tokens": sum(len(s) for s in streams), "fgrams": len(top), "top": [g for g, _ in top[:1000]]}


def run_matching(vocab_path: str, paths: List[str], dtype: str, vocab_size: int, repeats: int = 3) -> Dict:
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import load_vocab

    v = load_vocab(vocab_path)
    t0 = time.perf_counter()
    m = FgramMatcher(v, vocab_size)
    build = time.perf_counter() - t0
    tokens = np.concatenate(_streams(paths, dtype))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows, _ = m.match(tokens)
        best = min(best, time.perf_counter() - t0)
    return {"S": len(v), "positions": len(tokens), "seconds": best, "build_s": build,
            "matched": float((rows >= 0).mean()), "nodes": m.num_nodes}  # fmt: skip


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="benchmark_fgrams.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "bench", help="where corpora and vocabularies go")
    p.add_argument("--num-fgrams", type=int, default=1_000_000)
    p.add_argument("--naive-tokens", type=int, default=1_000_000, help="corpus prefix for the naive Counter")
    p.add_argument("--memory-gb", type=float, default=8.0)
    p.add_argument("--scale", action="store_true", help="also the >=100M-token / 10M-f-gram build and S=10M matching")
    p.add_argument("--scale-tokens", type=int, default=100_000_000)
    a = p.parse_args(argv)

    m = prepared_real_text(a.cache / "real-text")
    tok = m.tokenizer
    V, eos, pad, dtype = int(tok["vocab_size"]), m.eos_token_id, m.pad_token_id, m.dtype.name
    paths = [str(f) for f in m.token_files("train")]
    n_tok = m.num_tokens("train")
    print(f"# f-gram benchmark  ({machine()})")
    print(f"corpus: {n_tok:,} tokens of real text ({', '.join(s['name'] for s in m.data['sources'])})\n")

    ours = isolated(run_ours, paths, dtype, V, eos, pad, a.num_fgrams, 5, 0, a.memory_gb)
    base = isolated(run_numpy_unique, paths, dtype, eos, pad, a.num_fgrams, 5)
    naive = isolated(run_naive, paths, dtype, eos, pad, a.num_fgrams, 5, a.naive_tokens)
    assert ours["result"]["top"] == base["result"]["top"], "numpy.unique baseline disagrees with ours"
    rows = []
    ours_tps = ours["result"]["tokens"] / ours["seconds"]
    for name, r in [("ours (Apriori, parallel)", ours), ("numpy.unique per n", base), ("naive Counter", naive)]:
        tps = r["result"]["tokens"] / r["seconds"]
        rows.append([name, f"{r['result']['tokens']:,}", f"{r['seconds']:.1f}", f"{tps / 1e6:.2f}",
                     f"{ours_tps / tps:.1f}x", f"{r['peak_rss_gb']:.2f}"])  # fmt: skip
    print("## Counting, K = 5, min count 5, S = {:,}".format(a.num_fgrams))
    print(table(rows, ["implementation", "tokens", "seconds", "M tokens/s", "ours is", "peak RSS GB"]))
    print(f"(f-grams kept: {ours['result']['fgrams']:,} of {ours['result']['frequent']:,} n-grams seen >= 5 times; "
          f"top 1000 identical across implementations)\n")  # fmt: skip

    # Matching: a 1M vocabulary needs min count 2 on a corpus of this size.
    v1m = a.cache / "vocab-1m.safetensors"
    if not v1m.exists():
        isolated(build_vocab, paths, dtype, V, eos, pad, 1_000_000, 2, v1m, a.memory_gb)
    match_rows = []
    vocabs = [("1M (min count 2)", v1m)]
    if a.scale:
        print(f"## Scale: 10M f-grams from >= {a.scale_tokens / 1e6:.0f}M tokens")
        big = repeat_corpus(paths, dtype, a.scale_tokens, a.cache / "repeated")
        big_tokens = sum(np.memmap(p, dtype=dtype, mode="r").shape[0] for p in big)
        v10m = a.cache / "vocab-10m.safetensors"
        r = isolated(build_vocab, big, dtype, V, eos, pad, 10_000_000, 5, v10m, a.memory_gb)
        st = r["result"]["stats"]
        print(f"corpus: the real text above repeated to {big_tokens:,} tokens ({len(big)} files)")
        print(f"built {r['result']['fgrams']:,} f-grams ({st['frequent_ngrams']:,} n-grams seen >= 5 times) in "
              f"{r['seconds']:.1f} s = {big_tokens / r['seconds'] / 1e6:.2f}M tokens/s; peak RSS {r['peak_rss_gb']:.2f} GB "
              f"(budget --memory-gb {a.memory_gb}); {st['partitions']} partition(s), {st['chunks']} chunks")  # fmt: skip
        print("passes: " + "; ".join(f"n={q['n']}: {q['candidates']:,} candidates -> {q['frequent']:,} kept ({q['seconds']} s)"
                                     for q in st["passes"]) + "\n")  # fmt: skip
        vocabs.append(("10M (repeated corpus)", v10m))
    for name, path in vocabs:
        r = isolated(run_matching, str(path), paths, dtype, V)["result"]
        match_rows.append([name, f"{r['S']:,}", f"{r['nodes']:,}", f"{r['positions']:,}", f"{r['seconds']:.2f}",
                           f"{r['positions'] / r['seconds'] / 1e6:.2f}", f"{r['matched']:.1%}", f"{r['build_s']:.1f}"])  # fmt: skip
    print("## Matching on CPU (numpy, one process; best of 3)")
    print(table(match_rows, ["vocabulary", "S", "trie nodes", "positions", "seconds", "M positions/s", "matched", "index build s"]))
    return 0
