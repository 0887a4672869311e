"""The counting driver: plan, then per n a map (count chunks), a reduce (merge each partition) and a
publish (the pass's index), then the partitioned ranking and the decoding of the winners.

The driver holds no per-token data: only statistics, count histograms and the S winners it returns.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...peak_memory import peak_rss_gb
from ...resources import cap_processes
from .local import LocalExecutor
from .plan import CountPlan, CountSettings, TokenSource, plan_count
from .ranking import KEEP_ALL, decode_winners, find_cut, group_sizes
from .tasks import build_pass_index, count_chunk, kth_key, merge_partition, select_winners, tie_keys


@dataclasses.dataclass
class FgramCounts:
    tokens: np.ndarray  # int32 [S, K], -1 padded, rank order
    lengths: np.ndarray  # int8 [S]
    counts: np.ndarray  # int64 [S]
    stats: Dict[str, object]


@dataclasses.dataclass
class _Pass:
    n: int
    survivors: List  # handles, one per partition
    summaries: List[Dict]
    index: Optional[object]  # handle of the published index (None when nothing survived)


def count_fgrams(
    sources: Sequence[TokenSource],
    vocab_size: int,
    eos: int,
    pad: int,
    s: CountSettings,
    executor=None,
) -> FgramCounts:
    """Count f-grams over ``sources`` (see the package docstring) with ``executor`` (local worker
    processes by default, or a :class:`~.ray_executor.RayExecutor`)."""
    s.validate()
    own_work = executor is None and s.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="fgram-count-")) if own_work else s.work_dir
    own_executor = executor is None
    try:
        if own_executor:
            executor = LocalExecutor(cap_processes(s.processes), _fresh_work_dir(work))
        return _count(sources, vocab_size, eos, pad, s, executor)
    finally:
        if own_executor and executor is not None:
            executor.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _fresh_work_dir(work: Path) -> Path:
    from ...errors import fail

    work = Path(work)
    if work.exists() and any(work.iterdir()):
        fail(
            f"--work-dir {work} is not empty (an earlier run's counts?); give each run a fresh --work-dir"
        )
    work.mkdir(parents=True, exist_ok=True)
    return work


def _count(sources, vocab_size: int, eos: int, pad: int, s: CountSettings, ex) -> FgramCounts:
    t0 = time.time()
    plan = plan_count(sources, s, ex.cpus_per_node, ex.cpus_total)
    workers: Dict[tuple, float] = {}
    passes: List[_Pass] = []
    pass_stats: List[Dict] = []
    for n in range(2, s.max_n + 1):
        p = _run_pass(
            ex, plan, n, [q.index for q in passes], vocab_size, eos, pad, s, workers, pass_stats
        )
        passes.append(p)
        if p.index is None:
            break
    winners, cut = _rank(ex, passes, s.num_fgrams)
    tokens, lengths, counts = decode_winners(winners, vocab_size, s.max_n)
    driver = peak_rss_gb()
    stats = {
        "executor": ex.name,
        "nodes": ex.nodes,
        "corpus_tokens": plan.total_tokens,
        "frequent_ngrams": int(sum(sum(x["size"] for x in q.summaries) for q in passes)),
        "passes": pass_stats,
        "chunks": len(plan.chunks),
        "chunk_tokens": plan.chunk_tokens,
        "partitions": plan.partitions,
        "processes": ex.cpus_total,
        "rank_cut": cut,
        "wall_time_s": round(time.time() - t0, 2),
        "driver_peak_rss_gb": round(driver, 3),
        "worker_peak_rss_gb": {
            f"{node}:{pid}": round(gb, 3) for (node, pid), gb in sorted(workers.items())
        },
    }
    stats["peak_rss_gb"] = round(max([driver, *workers.values()]), 3)
    stats["task_nodes"] = len({node for node, _ in workers})
    return FgramCounts(tokens, lengths, counts, stats)


def _note_workers(workers: Dict[tuple, float], smalls: Sequence[Dict]) -> None:
    for st in smalls:
        key = (st["node"], st["pid"])
        workers[key] = max(workers.get(key, 0.0), st["peak_rss_gb"])


def _run_pass(
    ex,
    plan: CountPlan,
    n: int,
    indexes: List,
    vocab_size: int,
    eos: int,
    pad: int,
    s: CountSettings,
    workers: Dict,
    pass_stats: List[Dict],
) -> _Pass:
    """Count pass ``n`` (map), merge each partition (reduce), publish the survivors' index."""
    t0 = time.time()
    P = plan.partitions
    calls = [(c, n, vocab_size, eos, pad, s.max_n - 1, P, *indexes) for c in plan.chunks]
    partials, chunk_stats = ex.map(count_chunk, calls, num_big=P, desc=f"pass n={n}")
    _note_workers(workers, chunk_stats)
    t_merge = time.time()
    by_partition = [[partials[c][p] for c in range(len(partials))] for p in range(P)]
    del partials
    merged, summaries = ex.map(
        merge_partition,
        [(s.min_count, *parts) for parts in by_partition],
        num_big=1,
        desc=f"merge n={n}" if P > 1 else "",
    )
    ex.free([h for parts in by_partition for h in parts])
    del by_partition
    _note_workers(workers, summaries)
    survivors = [m[0] for m in merged]
    frequent = sum(x["size"] for x in summaries)
    t_index = time.time()
    index = None
    if frequent:
        (index,), index_stats = ex.map(build_pass_index, [(vocab_size, *survivors)], num_big=1)
        index = index[0]
        _note_workers(workers, index_stats)
    pass_stats.append(
        {
            "n": n,
            "candidates": int(sum(x["candidates"] for x in chunk_stats)),
            "chunk_distinct": int(sum(x["distinct"] for x in chunk_stats)),
            "frequent": int(frequent),
            "seconds": round(time.time() - t0, 2),
            "count_s": round(t_merge - t0, 2),
            "merge_s": round(t_index - t_merge, 2),
            "index_s": round(time.time() - t_index, 2),
        }
    )
    return _Pass(n, survivors, summaries, index)


def _rank(ex, passes: List[_Pass], num: int) -> Tuple[Dict[int, List[Dict]], Dict]:
    """The winners of each length (see ranking.py): cut from the summed count histograms, the last
    key of a partly kept group, then each partition's winners; and a description of the cut."""
    cut, take = find_cut(group_sizes({q.n: q.summaries for q in passes}), num)
    if cut is None:
        cut, info = dict(KEEP_ALL), {"kept": "all"}
    else:
        group = next(q for q in passes if q.n == cut["length"])
        size = sum(
            int(x["hist_freq"][x["hist_counts"] == cut["count"]].sum()) for x in group.summaries
        )
        if take < size:
            ties, _ = ex.map(
                tie_keys, [(cut["count"], take, h) for h in group.survivors], num_big=1
            )
            _, (kth,) = ex.map(kth_key, [(take, *[t[0] for t in ties])])
            cut["key"] = kth["key"]
        else:
            cut["key"] = 2**64 - 1
        info = {
            "count": cut["count"],
            "length": cut["length"],
            "kept": "part" if take < size else "whole",
            "of_group": take,
        }
    calls, lengths = [], []
    for q in passes:
        if q.index is None:
            continue
        for h in q.survivors:
            calls.append((q.n, cut, h, q.index))
            lengths.append(q.n)
    _, parts = ex.map(select_winners, calls, desc="rank")
    winners: Dict[int, List[Dict]] = {}
    for n, part in zip(lengths, parts):
        winners.setdefault(n, []).append(part)
    return winners, info
