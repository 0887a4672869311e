"""``scripts/benchmark_index.py``: the matcher's index at 100M f-grams, in RAM vs memory-mapped.

At 1B f-grams the index is 76.7 GB; a served artifact keeps it beside the table and opens it
memory-mapped with ``--table mmap``. This benchmark builds a synthetic index of ``--fgrams``
distinct pairs (every f-gram a 2-gram, so the trie has exactly S nodes and the index has the size
the accounting gives for S; K stays 5, so a decode step probes as a real one does), saves it the
way an export does (``FgramMatcher.save``), and then, each mode in a fresh process, measures:
RSS after opening, RSS after ``--lookups`` decode-step lookups (the last K tokens of one sequence,
half of them ending in an f-gram), and the latency of those lookups cold (mmap: page cache
evicted first with ``posix_fadvise(DONTNEED)``) and warm (the same queries again), plus warm
lookups for 16 and 64 sequences a step, RAM and mmap side by side in one run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentParser, positive_int
from ..peak_memory import peak_rss_gb, rss_gb
from .common import isolated, machine, table

V = 50280
K = 5
PRIME = np.uint64(2654435761)  # coprime to V**2: key -> key * PRIME mod V**2 is a bijection


def _pair_key(i: np.ndarray) -> np.ndarray:
    """The key of synthetic f-gram ``i`` (uint64 array)."""
    return (i * PRIME) % np.uint64(V * V)


def synthetic_pairs(num: int) -> np.ndarray:
    """``num`` distinct pair keys ``t0 * V + t1`` spread over the whole key space."""
    return _pair_key(np.arange(num, dtype=np.uint64))


def build(folder: Path, num: int) -> Dict:
    from ..fgrams.hashindex import HashIndex
    from ..fgrams.matching import FgramMatcher

    t0 = time.time()
    keys = synthetic_pairs(num)
    m = FgramMatcher.__new__(FgramMatcher)
    m.vocab_size, m.max_n, m.num_fgrams = V, K, num
    m.index = HashIndex.build(keys)  # node i = pair i = f-gram row i
    del keys
    m.node_row = np.arange(num, dtype=np.int64)
    m.lengths = np.full(num, 2, dtype=np.int8)
    t_build = time.time() - t0
    folder.mkdir(parents=True, exist_ok=True)
    meta = m.save(folder)
    meta.update(
        build_s=round(t_build, 1),
        save_s=round(time.time() - t0 - t_build, 1),
        bytes=sum((folder / f["file"]).stat().st_size for f in meta["files"].values()),
    )
    (folder / "index.json").write_text(json.dumps(meta))
    return meta


def _evict(folder: Path, meta: Dict) -> None:
    for f in meta["files"].values():
        fd = os.open(folder / f["file"], os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _queries(n: int, num: int, seqs: int, seed: int) -> List[np.ndarray]:
    """``n`` decode-step windows ``[seqs, K]``; half end in an f-gram (a pair of the index)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = rng.integers(0, V, size=(seqs, K), dtype=np.int64)
        hit = rng.random(seqs) < 0.5
        keys = _pair_key(rng.integers(0, num, size=int(hit.sum())).astype(np.uint64))
        w[hit, -2], w[hit, -1] = (
            (keys // np.uint64(V)).astype(np.int64),
            (keys % np.uint64(V)).astype(np.int64),
        )
        out.append(w)
    return out


def _timed(matcher, queries: List[np.ndarray]) -> np.ndarray:
    ms = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        matcher.match_batch(q)
        ms[i] = (time.perf_counter() - t) * 1e3
    return ms


def measure(folder: str, mode: str, lookups: int) -> Dict:
    from ..fgrams.matching import FgramMatcher

    folder = Path(folder)
    meta = json.loads((folder / "index.json").read_text())
    num = int(meta["num_fgrams"])
    queries = _queries(lookups, num, 1, seed=0)
    many = {s: _queries(200, num, s, seed=s) for s in (16, 64)}
    _evict(folder, meta)  # both modes start from disk
    rss0 = rss_gb()
    t = time.perf_counter()
    m = FgramMatcher.load(folder, meta, mmap=(mode == "mmap"), verify=False)
    open_s = time.perf_counter() - t
    rss_open = rss_gb()
    cold = _timed(m, queries)
    rss_after = rss_gb()
    warm = _timed(m, queries)
    hits = float(np.mean([(m.match_batch(q)[:, -1] >= 0).mean() for q in queries[:500]]))
    out = {
        "mode": mode,
        "open_s": open_s,
        "rss_before": rss0,
        "rss_open": rss_open,
        "rss_after": rss_after,
        "cold_median": float(np.median(cold)),
        "cold_p99": float(np.percentile(cold, 99)),
        "warm_median": float(np.median(warm)),
        "warm_p99": float(np.percentile(warm, 99)),
        "hits": hits,
    }
    for s, q in many.items():
        _timed(m, q)  # touch its pages once
        out[f"warm_median_{s}"] = float(np.median(_timed(m, q)))
    out["max_rss"] = peak_rss_gb()
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="benchmark_index.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/olmo-scone-index-bench"),
        help="where the index is built (kept)",
    )
    p.add_argument(
        "--fgrams", type=positive_int, default=100_000_000, help="f-grams in the synthetic index"
    )
    p.add_argument(
        "--lookups", type=positive_int, default=10_000, help="random lookups timed per mode"
    )
    a = p.parse_args(argv)
    print(machine())
    folder = a.work / f"index-{a.fgrams}"
    if (folder / "index.json").is_file():
        meta = json.loads((folder / "index.json").read_text())
    else:
        meta = isolated(build, folder, a.fgrams)["result"]
    print(
        f"index of {a.fgrams:,} f-grams: {meta['bytes'] / 1e9:.2f} GB on disk (built in {meta['build_s']} s, "
        f"saved in {meta['save_s']} s)"
    )
    rows = []
    for mode in ("ram", "mmap", "ram", "mmap"):  # two rounds, alternating
        r = isolated(measure, str(folder), mode, a.lookups)["result"]
        rows.append(
            [
                mode,
                f"{r['open_s']:.2f}",
                f"{r['rss_open']:.2f}",
                f"{r['rss_after']:.2f}",
                f"{r['cold_median']:.3f} / {r['cold_p99']:.3f}",
                f"{r['warm_median']:.3f} / {r['warm_p99']:.3f}",
                f"{r['warm_median_16']:.3f}",
                f"{r['warm_median_64']:.3f}",
                f"{r['hits']:.0%}",
            ]
        )
    print(
        table(
            rows,
            [
                "index",
                "open s",
                "RSS GB opened",
                f"RSS GB after {a.lookups:,} lookups",
                "1 seq cold ms (median / p99)",
                "1 seq warm ms (median / p99)",
                "16 seqs warm ms",
                "64 seqs warm ms",
                "last position matched",
            ],
        )
    )
    return 0
