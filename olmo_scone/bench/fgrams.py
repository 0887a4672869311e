"""``scripts/benchmark_fgrams.py``: counting and matching throughput on real text, side by side.

Counting (K = 5) is timed for four implementations in one run, each in a fresh process
(so peak memory is its own): ours (:mod:`olmo_scone.fgrams.counting`) on local worker
processes and on a local Ray runtime with as many CPUs, the straightforward vectorized
baseline (n-grams packed into uint64 keys, 1-D ``np.unique`` per n), and the naive
``collections.Counter`` reference. The naive one runs on a prefix of the corpus (it would
take minutes on all of it); throughput is per token, so the ratio stays meaningful. Matching is timed for vocabularies of 1M and
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


def run_ours(
    paths, dtype, vocab, eos, pad, num, min_count, processes, memory_gb, ray: bool = False
) -> Dict:
    """``count_fgrams`` on local worker processes, or (``ray``) on a local Ray runtime with as many CPUs;
    the runtime's start is timed apart from the count."""
    srcs = [
        TokenSource(Path(p), np.dtype(dtype), np.memmap(p, dtype=dtype, mode="r").shape[0])
        for p in paths
    ]
    settings = CountSettings(5, num, min_count, processes, memory_gb)
    executor, start_s = None, 0.0
    if ray:
        from ..fgrams.counting.ray_executor import RayExecutor

        t0 = time.perf_counter()
        executor = RayExecutor(None, processes, object_store_gb=max(0.1, memory_gb / 2))
        start_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        r = count_fgrams(srcs, vocab, eos, pad, settings, executor=executor)
        count_s = time.perf_counter() - t0
    finally:
        if executor is not None:
            executor.close()
    st = r.stats
    return {
        "tokens": st["corpus_tokens"],
        "fgrams": len(r.counts),
        "frequent": st["frequent_ngrams"],
        "count_s": count_s,
        "start_s": start_s,
        "stats": st,
        "top": [tuple(map(int, t[:n])) for t, n in zip(r.tokens[:1000], r.lengths[:1000])],
        "all": {tuple(map(int, t[:n])): int(c) for t, n, c in zip(r.tokens, r.lengths, r.counts)}
        if len(r.counts) < num
        else None,
    }


def run_packed_unique(paths, dtype, vocab, eos, pad, num, min_count) -> Dict:
    """The straightforward vectorized baseline: each n-gram packed into one uint64 key
    (``key = key * V + next``), windows holding EOS or pad masked out, then a 1-D
    ``np.unique(return_counts=True)`` per n, and the survivors ranked with ``np.lexsort``. With
    V = 50,280, V**5 > 2**64: 5-gram keys wrap, so there the key is a hash; the benchmark checks
    the survivors against the exact counts. Timed up to the ranked top S (``count_s``)."""
    t_start = time.perf_counter()
    V = np.uint64(vocab)
    tokens = np.concatenate(_streams(paths, dtype)).astype(np.int64)
    # windows never cross files: a file's last n-1 positions start no window
    ends = np.cumsum([len(x) for x in _streams(paths, dtype)])
    rows_all, counts_all, lengths_all = [], [], []
    for n in range(2, 6):
        m = len(tokens) - n + 1
        key = np.zeros(m, dtype=np.uint64)
        bad = np.zeros(m, dtype=bool)
        for j in range(n):
            w = tokens[j : j + m]
            key = key * V + w.astype(np.uint64)  # wraps mod 2**64 once V**n does not fit
            bad |= (w == eos) | (w == pad)
        for e in ends[:-1]:
            bad[max(0, e - n + 1) : e] = True
        starts = np.flatnonzero(~bad)
        if vocab**n < 2**64:  # exact keys: the tokens are the key's base-V digits
            u, c = np.unique(key[starts], return_counts=True)
            keep = c >= min_count
            rows = np.full((int(keep.sum()), 5), -1, dtype=np.int64)
            rest = u[keep]
            for j in range(n - 1, -1, -1):
                rows[:, j] = (rest % V).astype(np.int64)
                rest = rest // V
        else:  # wrapped keys (a hash): read each survivor's tokens at its first occurrence
            _, first, c = np.unique(key[starts], return_index=True, return_counts=True)
            keep = c >= min_count
            pos = starts[first[keep]]
            rows = np.full((len(pos), 5), -1, dtype=np.int64)
            rows[:, :n] = tokens[pos[:, None] + np.arange(n)]
        rows_all.append(rows)
        counts_all.append(c[keep])
        lengths_all.append(np.full(len(rows), n))
    rows, counts, lengths = (
        np.concatenate(rows_all),
        np.concatenate(counts_all),
        np.concatenate(lengths_all),
    )
    order = np.lexsort([rows[:, j] for j in range(4, -1, -1)] + [lengths, -counts])[:num]
    count_s = time.perf_counter() - t_start
    grams = [tuple(int(x) for x in r[:n]) for r, n in zip(rows, lengths)]
    return {
        "tokens": len(tokens),
        "fgrams": len(order),
        "frequent": len(grams),
        "count_s": count_s,
        "top": [grams[i] for i in order[:1000]],
        "all": dict(zip(grams, map(int, counts))),
    }


def _memory_rows(title: str, runs) -> str:
    """Peak RSS of the driver and of each worker: the driver holds no per-token data."""
    rows = []
    for name, r in runs:
        st = r["result"]["stats"]
        name = f"{name} (S = {r['result']['fgrams']:,})" if "fgrams" in r["result"] else name
        w = sorted(st["worker_peak_rss_gb"].values(), reverse=True)
        rows.append(
            [
                name,
                f"{st['corpus_tokens']:,}",
                f"{st['driver_peak_rss_gb']:.2f}",
                len(w),
                ", ".join(f"{x:.2f}" for x in w[:6]) + (" ..." if len(w) > 6 else ""),
            ]
        )
    return (
        f"### Peak RSS, {title}\n"
        + table(
            rows, ["executor", "tokens", "driver GB", "workers", "worker peak GB (largest first)"]
        )
        + "\n"
    )


def run_naive(paths, dtype, eos, pad, num, min_count, limit) -> Dict:
    from ..fgrams.reference import count_all_ngrams, top_fgrams

    streams = _streams(paths, dtype, limit)
    top = top_fgrams(count_all_ngrams(streams, 5, eos, pad), num, min_count)
    return {
        "tokens": sum(len(s) for s in streams),
        "fgrams": len(top),
        "top": [g for g, _ in top[:1000]],
    }


def run_matching(
    vocab_path: str, paths: List[str], dtype: str, vocab_size: int, repeats: int = 3
) -> Dict:
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
    return {
        "S": len(v),
        "positions": len(tokens),
        "seconds": best,
        "build_s": build,
        "matched": float((rows >= 0).mean()),
        "nodes": m.num_nodes,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="benchmark_fgrams.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cache",
        type=Path,
        default=REPO / "runs" / "bench",
        help="where corpora and vocabularies go",
    )
    p.add_argument("--num-fgrams", type=int, default=1_000_000, help="S: how many f-grams to keep")
    p.add_argument(
        "--naive-tokens", type=int, default=1_000_000, help="corpus prefix for the naive Counter"
    )
    p.add_argument("--memory-gb", type=float, default=8.0, help="memory budget of the counter (GB)")
    p.add_argument(
        "--processes", type=int, default=2, help="worker processes (local) and CPUs (Ray)"
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="also the >=100M-token / 10M-f-gram build and S=10M matching",
    )
    p.add_argument(
        "--scale-tokens",
        type=int,
        default=100_000_000,
        help="corpus size (tokens) the measured rates are scaled to",
    )
    a = p.parse_args(argv)

    m = prepared_real_text(a.cache / "real-text")
    tok = m.tokenizer
    V, eos, pad, dtype = int(tok["vocab_size"]), m.eos_token_id, m.pad_token_id, m.dtype.name
    paths = [str(f) for f in m.token_files("train")]
    n_tok = m.num_tokens("train")
    print(f"# f-gram benchmark  ({machine()})")
    print(
        f"corpus: {n_tok:,} tokens of real text ({', '.join(s['name'] for s in m.data['sources'])})\n"
    )

    ours = isolated(run_ours, paths, dtype, V, eos, pad, a.num_fgrams, 5, a.processes, a.memory_gb)
    on_ray = isolated(
        run_ours, paths, dtype, V, eos, pad, a.num_fgrams, 5, a.processes, a.memory_gb, True
    )
    base = isolated(run_packed_unique, paths, dtype, V, eos, pad, a.num_fgrams, 5)
    naive = isolated(run_naive, paths, dtype, eos, pad, a.num_fgrams, 5, a.naive_tokens)
    assert on_ray["result"]["all"] == ours["result"]["all"], (
        "the Ray path disagrees with the local path"
    )
    assert ours["result"]["top"] == base["result"]["top"], (
        "the packed-key baseline disagrees with ours"
    )
    exact = ours["result"]["all"] is not None and base["result"]["all"] == ours["result"]["all"]
    rows = []
    ours_tps = ours["result"]["tokens"] / ours["result"]["count_s"]
    for name, r, secs in [
        ("ours, local processes", ours, ours["result"]["count_s"]),
        ("ours, local Ray runtime", on_ray, on_ray["result"]["count_s"]),
        ("numpy packed uint64 key + np.unique per n", base, base["result"]["count_s"]),
        ("naive Counter", naive, naive["seconds"]),
    ]:
        tps = r["result"]["tokens"] / secs
        peak = (
            r["result"]["stats"]["peak_rss_gb"] if "stats" in r["result"] else r["peak_rss_gb"]
        )  # Ray's workers: not our children
        rows.append(
            [
                name,
                f"{r['result']['tokens']:,}",
                f"{secs:.1f}",
                f"{tps / 1e6:.2f}",
                f"{ours_tps / tps:.2f}x",
                f"{peak:.2f}",
            ]
        )
    print(
        "## Counting, K = 5, min count 5, S = {:,}, {} worker processes".format(
            a.num_fgrams, a.processes
        )
    )
    print(
        table(
            rows,
            ["implementation", "tokens", "seconds", "M tokens/s", "ours (local) is", "peak RSS GB"],
        )
    )
    print(
        f"(f-grams kept: {ours['result']['fgrams']:,} of {ours['result']['frequent']:,} n-grams seen >= 5 times; "
        f"top 1000 identical across implementations; local and Ray vocabularies identical; the packed-key "
        f"baseline's survivors (5-gram keys wrap mod 2**64) {'equal' if exact else 'DIFFER from'} the exact counts)"
    )
    print(
        f"(seconds exclude process start, the baseline's conversion of its result to Python tuples for the checks, and, for Ray, the runtime's start: {on_ray['result']['start_s']:.1f} s)\n"
    )
    print(_memory_rows("12.6M-token counts", [("local", ours), ("ray", on_ray)]))

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
        big_ray = isolated(
            run_ours, big, dtype, V, eos, pad, 10_000_000, 5, a.processes, a.memory_gb, True
        )
        from ..fgrams.vocab import load_vocab

        v = load_vocab(v10m)
        top_local = [tuple(map(int, t[:n])) for t, n in zip(v.tokens[:1000], v.lengths[:1000])]
        assert (
            big_ray["result"]["fgrams"] == r["result"]["fgrams"]
            and big_ray["result"]["top"] == top_local
        )
        st = r["result"]["stats"]
        print(f"corpus: the real text above repeated to {big_tokens:,} tokens ({len(big)} files)")
        print(
            f"built {r['result']['fgrams']:,} f-grams ({st['frequent_ngrams']:,} n-grams seen >= 5 times) in "
            f"{r['seconds']:.1f} s = {big_tokens / r['seconds'] / 1e6:.2f}M tokens/s; peak RSS {r['peak_rss_gb']:.2f} GB "
            f"(budget --memory-gb {a.memory_gb}); {st['partitions']} partition(s), {st['chunks']} chunks"
        )
        print(
            "passes: "
            + "; ".join(
                f"n={q['n']}: {q['candidates']:,} candidates -> {q['frequent']:,} kept ({q['seconds']} s)"
                for q in st["passes"]
            )
            + "\n"
        )
        rt = big_ray["result"]
        print(
            f"the same build on a local Ray runtime: {rt['count_s']:.1f} s = {big_tokens / rt['count_s'] / 1e6:.2f}M tokens/s "
            f"(runtime start {rt['start_s']:.1f} s apart); same f-grams (top 1000 checked)\n"
        )
        print(
            _memory_rows(
                "100M-token counts, S = 10M",
                [
                    ("local", {"result": {"stats": st}, "peak_rss_gb": r["peak_rss_gb"]}),
                    ("ray", big_ray),
                ],
            )
        )
        # the driver holds the S winners it writes, never per-token data: at equal S its memory does not
        # grow with the corpus
        same_s = isolated(
            run_ours, big, dtype, V, eos, pad, a.num_fgrams, 5, a.processes, a.memory_gb, True
        )
        print(
            _memory_rows(
                f"S = {a.num_fgrams:,} on both corpora (Ray)",
                [("ray, 12.6M tokens", on_ray), ("ray, 100M tokens", same_s)],
            )
        )
        vocabs.append(("10M (repeated corpus)", v10m))
    for name, path in vocabs:
        r = isolated(run_matching, str(path), paths, dtype, V)["result"]
        match_rows.append(
            [
                name,
                f"{r['S']:,}",
                f"{r['nodes']:,}",
                f"{r['positions']:,}",
                f"{r['seconds']:.2f}",
                f"{r['positions'] / r['seconds'] / 1e6:.2f}",
                f"{r['matched']:.1%}",
                f"{r['build_s']:.1f}",
            ]
        )
    print("## Matching on CPU (numpy, one process; best of 3)")
    print(
        table(
            match_rows,
            [
                "vocabulary",
                "S",
                "trie nodes",
                "positions",
                "seconds",
                "M positions/s",
                "matched",
                "index build s",
            ],
        )
    )
    return 0
