"""Counting f-grams: the S most frequent n-grams, 2 <= n <= K (the paper's Algorithm 3).

One pass per n. Pass 2 counts every token pair that holds neither EOS nor pad. Pass
n+1 counts an (n+1)-gram only if its n-prefix and n-suffix both survived pass n, and a
pass keeps only n-grams seen at least ``min_count`` times. Because counts can only
fall as n-grams grow, this pruning loses nothing: the survivors are exactly the
n-grams with count >= ``min_count`` (the tests check this against brute force).

Encoding. A surviving n-gram gets an id (its index in pass n's sorted key table), and
an (n+1)-gram is the 64-bit key ``id(prefix) * V + last_token``: exact, no hashing.
Per position we keep the id of the surviving n-gram that ends there (or -1), so the
next pass reads its candidates off two neighbouring ids.

Scale. The token files are cut into chunks (with K-1 tokens of left context) that
worker processes count in parallel. Each chunk's partial counts are written to disk,
split by a hash of the key into P partitions; the merge then loads one partition at a
time, so memory stays within ``memory_gb`` however many distinct candidates there are.
The partial-count files (``docs/formats.md``) are what a multi-machine run exchanges:
counts from any set of chunks, on any machines, merge with :func:`merge_partials`.

Ranking and ties: by count (descending), then length (ascending), then token ids
(lexicographically ascending). With this order every prefix and suffix of a chosen
f-gram ranks before it, so the top S are closed under prefixes and suffixes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic import atomic_write_json
from ..errors import fail
from ..progress import progress
from .hashindex import HashIndex, _home

PARTIAL_BYTES_PER_ENTRY = 16  # uint64 key + uint64 count
MERGE_OVERHEAD = 3  # sort + reduce keep about three copies alive


@dataclasses.dataclass
class CountSettings:
    max_n: int = 5
    num_fgrams: int = 1_000_000
    min_count: int = 5
    processes: int = 0  # 0: all cores
    memory_gb: float = 8.0
    chunk_tokens: int = 1 << 20
    work_dir: Optional[Path] = None  # partial counts; a temporary directory by default
    # Multi-machine runs: shard i of N counts chunks i, i+N, ...; all shards share work_dir
    # (a shared filesystem); shard 0 (the leader) merges each pass and writes the vocabulary.
    shard: int = 0
    num_shards: int = 1
    shard_timeout_s: float = 24 * 3600.0

    def validate(self) -> None:
        if self.max_n < 2:
            fail(f"--max-n must be >= 2 (an f-gram has at least two tokens), got {self.max_n}")
        if self.num_fgrams <= 0:
            fail(f"--num-fgrams must be > 0, got {self.num_fgrams}")
        if self.min_count < 1:
            fail(f"--min-count must be >= 1, got {self.min_count}")
        if self.memory_gb <= 0:
            fail(f"--memory-gb must be > 0, got {self.memory_gb}")
        if not 0 <= self.shard < self.num_shards:
            fail(f"--shard must be I/N with 0 <= I < N, got {self.shard}/{self.num_shards}")
        if self.num_shards > 1 and self.work_dir is None:
            fail("a sharded run needs --work-dir on a filesystem that every shard can reach")


@dataclasses.dataclass
class TokenSource:
    """One token file: a raw memmap of ``dtype``."""

    path: Path
    dtype: np.dtype
    length: int


@dataclasses.dataclass
class FgramCounts:
    tokens: np.ndarray  # int32 [S, K], -1 padded, rank order
    lengths: np.ndarray  # int8 [S]
    counts: np.ndarray  # int64 [S]
    stats: Dict[str, object]


@dataclasses.dataclass(frozen=True)
class _Chunk:
    index: int
    path: str
    dtype: str
    start: int  # first position whose n-grams (ending there) this chunk counts
    end: int


def _load(chunk: _Chunk, context: int) -> Tuple[np.ndarray, int]:
    lo = max(0, chunk.start - context)
    mm = np.memmap(chunk.path, dtype=np.dtype(chunk.dtype), mode="r")
    return np.asarray(mm[lo : chunk.end], dtype=np.int64), chunk.start - lo


def _bigram_keys(t: np.ndarray, vocab: int, eos: int, pad: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keys of the pairs ending at positions 1..len-1 and whether each is a candidate."""
    ok = (t != eos) & (t != pad)
    return t[:-1] * vocab + t[1:], ok[:-1] & ok[1:]


def _ids_path(work: Path, n: int, chunk: int) -> Path:
    return work / "ids" / f"n{n}" / f"chunk-{chunk:06d}.npy"


def _table_path(work: Path, n: int) -> Path:
    return work / f"pass-{n}" / "index"


def partial_path(work: Path, n: int, partition: int, chunk: int) -> Path:
    """Partial counts of one chunk: ``<this>.keys.npy`` (uint64, sorted, unique) and
    ``<this>.counts.npy`` (uint32 or uint64), plain .npy files (see docs/formats.md)."""
    return work / f"pass-{n}" / f"part-{partition:04d}" / f"chunk-{chunk:06d}"


def write_partial(base: Path, keys: np.ndarray, counts: np.ndarray) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    np.save(f"{base}.counts.npy", counts)
    np.save(f"{base}.keys.npy", keys)  # written last: its presence marks a complete partial


def partial_files(folder: Path) -> List[Path]:
    """The complete partials in ``folder`` (by their keys file), as base paths."""
    return sorted(Path(str(p)[: -len(".keys.npy")]) for p in folder.glob("*.keys.npy"))


_INDEX_CACHE: Dict[str, HashIndex] = {}


def _worker_init() -> None:
    """A counting worker: glibc keeps its freed memory, and it dies with the run that forked it
    (a killed build_fgrams.py must not leave workers behind)."""
    from ..supervision import die_with_parent

    keep_freed_memory()
    die_with_parent()


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the OS.

    Counting allocates and frees many arrays of a few MB per chunk. By default glibc
    serves those with fresh mmaps and unmaps them on free, so every chunk pays the page
    faults again; raising the mmap and trim thresholds makes the worker's heap reuse its
    pages (in this benchmark, about a quarter of the wall time). No effect off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


def _load_index(path: Path) -> HashIndex:
    """A pass's index, loaded once per worker process (each worker runs many chunks)."""
    key = str(path)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        keys, values = np.load(f"{path}.keys.npy"), np.load(f"{path}.values.npy")
        bits, max_probe = (int(x) for x in np.load(f"{path}.shape.npy"))
        _INDEX_CACHE[key] = HashIndex(keys, values, bits, max_probe)
    return _INDEX_CACHE[key]


def _positions_ids(t: np.ndarray, n: int, work: Path, chunk: int, vocab: int, eos: int, pad: int) -> np.ndarray:
    """ids[j] of the surviving n-gram ending at local position j (-1 if none); saved for pass n+2."""
    ids = np.full(len(t), -1, dtype=np.int64)
    index = _load_index(_table_path(work, n))
    if n == 2:
        keys, ok = _bigram_keys(t, vocab, eos, pad)
        pos = np.flatnonzero(ok) + 1
        ids[pos] = index.lookup(keys[ok])
    else:
        prev = np.load(_ids_path(work, n - 1, chunk)).astype(np.int64)
        pos = np.flatnonzero((prev[:-1] >= 0) & (prev[1:] >= 0)) + 1
        ids[pos] = index.lookup(prev[pos - 1].astype(np.uint64) * np.uint64(vocab) + t[pos].astype(np.uint64))
    path = _ids_path(work, n, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, ids.astype(np.int32))
    return ids


def _count_job(args) -> Tuple[int, int, int]:
    """Count pass ``n`` on one chunk; write its partial counts. Returns (chunk, candidates, distinct)."""
    chunk, n, work, vocab, eos, pad, context, partitions = args
    t, off = _load(chunk, context)
    if n == 2:
        keys, ok = _bigram_keys(t, vocab, eos, pad)
        ok[: max(0, off - 1)] = False  # only pairs ending at positions >= chunk.start
        keys = keys[ok].astype(np.uint64)
    else:
        prev = _positions_ids(t, n - 1, work, chunk.index, vocab, eos, pad)
        cand = (prev[:-1] >= 0) & (prev[1:] >= 0)
        cand[: max(0, off - 1)] = False
        pos = np.flatnonzero(cand) + 1
        keys = prev[pos - 1].astype(np.uint64) * np.uint64(vocab) + t[pos].astype(np.uint64)
    if len(keys) and keys.max() < 2**32:  # sorting 32-bit keys is about twice as fast
        uniq, counts = np.unique(keys.astype(np.uint32), return_counts=True)
        uniq = uniq.astype(np.uint64)
    else:
        uniq, counts = np.unique(keys, return_counts=True)
    part = (_home(uniq, int(math.log2(partitions))) if partitions > 1 else np.zeros(len(uniq), dtype=np.int64))
    for p in range(partitions):
        sel = part == p
        write_partial(partial_path(work, n, p, chunk.index), uniq[sel], counts[sel].astype(np.uint32))
    return chunk.index, len(keys), len(uniq)


def merge_partials(paths: Sequence[Path], min_count: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sum partial counts (any chunks, any machines) and keep keys seen >= ``min_count`` times."""
    if not paths:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    keys = np.concatenate([np.load(f"{p}.keys.npy") for p in paths]).astype(np.uint64, copy=False)
    counts = np.concatenate([np.load(f"{p}.counts.npy").astype(np.uint64) for p in paths])
    if len(keys) and keys.max() < 2**32:  # 32-bit sort when the keys allow: about twice as fast
        order = np.argsort(keys.astype(np.uint32))
    else:
        order = np.argsort(keys)
    keys, counts = keys[order], counts[order]
    if not len(keys):
        return keys, counts
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    keys, counts = keys[starts], np.add.reduceat(counts, starts)
    keep = counts >= min_count
    return keys[keep], counts[keep]


def _merge_job(args) -> Tuple[np.ndarray, np.ndarray]:
    work, n, p, min_count = args
    folder = work / f"pass-{n}" / f"part-{p:04d}"
    out = merge_partials(partial_files(folder), min_count)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _chunks(sources: Sequence[TokenSource], chunk_tokens: int) -> List[_Chunk]:
    out = []
    for s in sources:
        for start in range(0, s.length, chunk_tokens):
            out.append(_Chunk(len(out), str(s.path), s.dtype.name, start, min(s.length, start + chunk_tokens)))
    return out


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"time": time.time()})


def _wait_file(path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            fail(f"gave up after {timeout:.0f} s waiting for {path} (is every shard running with the same --work-dir?)")
        time.sleep(0.2)


def _wait_json(path: Path, timeout: float) -> Dict:
    _wait_file(path, timeout)
    return json.loads(path.read_text())


def _agree_on_plan(work: Path, plan: Dict, s: CountSettings) -> Dict:
    """Shards must cut the corpus the same way: the leader writes the plan, the others adopt it."""
    path = work / "plan.json"
    if s.shard == 0:
        if path.exists():
            fail(f"{work} already holds a counting run (plan.json); give each run a fresh --work-dir")
        atomic_write_json(path, plan)
        return plan
    theirs = _wait_json(path, s.shard_timeout_s)
    for key in ("total_tokens", "max_n", "min_count", "vocab_size", "num_shards"):
        if theirs[key] != plan[key]:
            fail(f"shard {s.shard} disagrees with the leader on {key}: {plan[key]} here, {theirs[key]} in {path}; "
                 "every shard must see the same token files and settings")  # fmt: skip
    return theirs


def _peak_rss_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


def rank_fgrams(tokens: np.ndarray, lengths: np.ndarray, counts: np.ndarray, num: int) -> np.ndarray:
    """Row order of the top ``num`` by (count desc, length asc, tokens asc)."""
    if len(counts) <= num:
        cand = np.arange(len(counts))
    else:
        threshold = np.partition(counts, len(counts) - num)[len(counts) - num]
        cand = np.flatnonzero(counts >= threshold)
    keys = [tokens[cand, j] for j in range(tokens.shape[1] - 1, -1, -1)]
    order = np.lexsort(keys + [lengths[cand], -counts[cand]])
    return cand[order[:num]]


def count_fgrams(sources: Sequence[TokenSource], vocab_size: int, eos: int, pad: int, s: CountSettings) -> FgramCounts:
    """Count f-grams over ``sources``; see the module docstring."""
    s.validate()
    total = sum(src.length for src in sources)
    if total == 0:
        fail("the token files are empty: nothing to count")
    processes = s.processes or os.cpu_count() or 1
    budget = s.memory_gb * 2**30
    # Worker memory: ~10 int64 arrays of a chunk each; shrink chunks to fit the budget.
    chunk_tokens = int(max(1024, min(s.chunk_tokens, budget / (processes * 10 * 8 * 2))))
    chunks = _chunks(sources, chunk_tokens)
    est = total * PARTIAL_BYTES_PER_ENTRY * MERGE_OVERHEAD
    # Partitions merge in parallel, one per process at a time, so each must fit in
    # budget / processes; and there is at least one per process.
    partitions = 1 << max(0, math.ceil(math.log2(max(float(processes), processes * est / budget))))
    context = s.max_n - 1
    own_work = s.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="fgram-count-")) if own_work else Path(s.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if not own_work and s.num_shards == 1 and (work / "pass-2").exists():
        fail(f"--work-dir {work} holds an earlier run's counts; give each run a fresh --work-dir")
    leader = s.shard == 0
    plan = {"total_tokens": int(total), "chunks": len(chunks), "chunk_tokens": chunk_tokens, "partitions": partitions,
            "max_n": s.max_n, "min_count": s.min_count, "vocab_size": int(vocab_size), "num_shards": s.num_shards}  # fmt: skip
    if s.num_shards > 1:
        plan = _agree_on_plan(work, plan, s)
        chunk_tokens, partitions = plan["chunk_tokens"], plan["partitions"]
        chunks = _chunks(sources, chunk_tokens)
    mine = chunks[s.shard :: s.num_shards]
    t0 = time.time()
    tables: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    passes = []
    ctx = mp.get_context("fork")
    try:
        with ctx.Pool(processes, initializer=_worker_init) as pool:
            for n in range(2, s.max_n + 1):
                tp = time.time()
                jobs = [(c, n, work, vocab_size, eos, pad, context, partitions) for c in mine]
                cand = distinct = 0
                for _, c_n, d_n in progress(pool.imap_unordered(_count_job, jobs), total=len(jobs),
                                            desc=f"pass n={n}", unit="chunk"):  # fmt: skip
                    cand += c_n
                    distinct += d_n
                t_merge = time.time()
                if s.num_shards > 1:
                    _touch(work / f"pass-{n}" / f"shard-{s.shard}.done")
                if not leader:  # the leader merges; the others wait for its table
                    info = _wait_json(work / f"pass-{n}" / "table.json", s.shard_timeout_s)
                    passes.append({"n": n, "candidates": int(cand), "frequent": info["frequent"]})
                    if info["frequent"] == 0:
                        break
                    continue
                for other in range(1, s.num_shards):
                    _wait_file(work / f"pass-{n}" / f"shard-{other}.done", s.shard_timeout_s)
                # Partitions merge in parallel, one per worker at a time (each within the budget).
                merged = pool.map(_merge_job, [(work, n, p, s.min_count) for p in range(partitions)])
                keys = np.concatenate([k for k, _ in merged])
                counts = np.concatenate([c for _, c in merged])
                order = np.argsort(keys)
                keys, counts = keys[order], counts[order]
                tables[n] = (keys, counts)
                t_index = time.time()
                index = HashIndex.build(keys)
                base = _table_path(work, n)
                np.save(f"{base}.keys.npy", index.keys)
                np.save(f"{base}.values.npy", index.values)
                np.save(f"{base}.shape.npy", np.array([index.bits, index.max_probe]))
                atomic_write_json(work / f"pass-{n}" / "table.json", {"frequent": int(len(keys))})
                if n >= 3 and s.num_shards == 1:
                    shutil.rmtree(work / "ids" / f"n{n - 2}", ignore_errors=True)
                passes.append({"n": n, "candidates": int(cand), "chunk_distinct": int(distinct),
                               "frequent": int(len(keys)), "seconds": round(time.time() - tp, 2),
                               "count_s": round(t_merge - tp, 2), "merge_s": round(t_index - t_merge, 2)})  # fmt: skip
                if len(keys) == 0:
                    break
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    if not leader:
        empty = np.zeros((0, s.max_n), np.int32)
        stats = {"shard": s.shard, "passes": passes, "chunks": len(mine), "wall_time_s": round(time.time() - t0, 2)}
        return FgramCounts(empty, np.zeros(0, np.int8), np.zeros(0, np.int64), stats)
    # Decode keys into token rows, n by n.
    all_tokens, all_len, all_counts = [], [], []
    prev_tokens = None
    for n, (keys, counts) in sorted(tables.items()):
        hi, lo = (keys // np.uint64(vocab_size)).astype(np.int64), (keys % np.uint64(vocab_size)).astype(np.int64)
        rows = np.stack([hi, lo], axis=1) if n == 2 else np.concatenate([prev_tokens[hi], lo[:, None]], axis=1)
        prev_tokens = rows
        padded = np.full((len(rows), s.max_n), -1, dtype=np.int32)
        padded[:, :n] = rows
        all_tokens.append(padded)
        all_len.append(np.full(len(rows), n, dtype=np.int8))
        all_counts.append(counts.astype(np.int64))
    tokens = np.concatenate(all_tokens) if all_tokens else np.zeros((0, s.max_n), np.int32)
    lengths = np.concatenate(all_len) if all_len else np.zeros(0, np.int8)
    counts = np.concatenate(all_counts) if all_counts else np.zeros(0, np.int64)
    top = rank_fgrams(tokens, lengths, counts, s.num_fgrams)
    stats = {
        "corpus_tokens": int(total),
        "frequent_ngrams": int(len(counts)),
        "passes": passes,
        "chunks": len(chunks),
        "chunk_tokens": chunk_tokens,
        "partitions": partitions,
        "processes": processes,
        "wall_time_s": round(time.time() - t0, 2),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
    }
    return FgramCounts(tokens[top], lengths[top], counts[top], stats)
