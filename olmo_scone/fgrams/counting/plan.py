"""How a count is cut into tasks: the settings, the chunks of the corpus and the hash partitions.

The plan depends on the corpus, the settings and the CPUs that run it, never on which executor
(local processes or Ray) runs it; the result depends on none of these (tests/test_fgram_ray.py).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ...errors import fail

#: bytes of one partial count (uint64 key + uint64 count once merged)
PARTIAL_BYTES_PER_ENTRY = 16
#: a merge (sort + reduce) keeps about three copies of its partition alive
MERGE_OVERHEAD = 3
#: a counting task holds about ten int64 arrays of its chunk; twice that for headroom
CHUNK_BYTES_PER_TOKEN = 10 * 8 * 2
#: the most hash partitions a plan may have: a budget that needs more is refused (``--memory-gb
#: 1e-9`` planned about 2^34 of them and printed nothing for ten minutes)
MAX_PARTITIONS = 1 << 16


@dataclasses.dataclass
class CountSettings:
    max_n: int = 5
    num_fgrams: int = 1_000_000
    min_count: int = 5
    processes: int = 0  # local worker processes (0: all cores); under Ray, the CPUs of each node
    memory_gb: float = 8.0  # one machine's budget; under Ray, each node's
    chunk_tokens: int = 1 << 20
    work_dir: Optional[Path] = (
        None  # local runs: where partial counts go (a temporary folder by default)
    )

    def validate(self) -> None:
        if self.max_n < 2:
            fail(f"--max-n must be >= 2 (an f-gram has at least two tokens), got {self.max_n}")
        if self.num_fgrams <= 0:
            fail(f"--num-fgrams must be > 0, got {self.num_fgrams}")
        if self.min_count < 1:
            fail(f"--min-count must be >= 1, got {self.min_count}")
        if not self.memory_gb > 0:
            fail(f"--memory-gb must be > 0, got {self.memory_gb}")
        if self.chunk_tokens < 1:
            fail(f"--chunk-tokens must be > 0, got {self.chunk_tokens}")


@dataclasses.dataclass
class TokenSource:
    """One token file: a raw memmap of ``dtype``."""

    path: Path
    dtype: np.dtype
    length: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Positions ``[start, end)`` of one token file: a counting task counts the n-grams that end
    there, reading ``max_n - 1`` tokens of left context before ``start``."""

    index: int
    path: str  # absolute: a worker on another node opens the same path (shared storage)
    dtype: str
    start: int
    end: int


@dataclasses.dataclass
class CountPlan:
    chunks: List[Chunk]
    chunk_tokens: int
    partitions: int  # a power of two: partition p holds the keys whose top log2(P) hash bits are p
    total_tokens: int


def plan_count(
    sources: Sequence[TokenSource], s: CountSettings, cpus_per_node: int, cpus_total: int
) -> CountPlan:
    """Chunks small enough that a node's concurrent counting tasks fit its memory budget, and enough
    partitions that each node's concurrent merges fit it too (at least one partition per CPU, so the
    merge is as parallel as the count)."""
    total = sum(src.length for src in sources)
    if total == 0:
        fail("the token files are empty: nothing to count")
    budget = s.memory_gb * 2**30
    chunk_tokens = int(
        max(1024, min(s.chunk_tokens, budget / (cpus_per_node * CHUNK_BYTES_PER_TOKEN)))
    )
    merge_bytes = total * PARTIAL_BYTES_PER_ENTRY * MERGE_OVERHEAD
    need = max(float(cpus_total), cpus_per_node * merge_bytes / budget)
    partitions = 1 << max(0, math.ceil(math.log2(need)))
    if partitions > MAX_PARTITIONS:
        least = cpus_per_node * merge_bytes / MAX_PARTITIONS / 2**30
        fail(
            f"--memory-gb {s.memory_gb:g} is too small for {total:,} tokens: the merge would need {partitions:,} "
            f"partitions (at most {MAX_PARTITIONS:,}); give at least --memory-gb {least:.3g}"
        )
    return CountPlan(_chunks(sources, chunk_tokens), chunk_tokens, partitions, int(total))


def _chunks(sources: Sequence[TokenSource], chunk_tokens: int) -> List[Chunk]:
    out: List[Chunk] = []
    for src in sources:
        path = str(Path(src.path).resolve())
        for start in range(0, src.length, chunk_tokens):
            out.append(
                Chunk(
                    len(out),
                    path,
                    np.dtype(src.dtype).name,
                    start,
                    min(src.length, start + chunk_tokens),
                )
            )
    return out
