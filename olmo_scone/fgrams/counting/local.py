"""Running a count's tasks on this machine: a pool of forked worker processes.

A task's large outputs (partial counts, survivors, indexes) are spilled to files in the work folder
and reach the next task memory-mapped: pickle protocol 5 with the arrays' buffers stored out of band
and page-aligned, so a pass's index is one copy in the page cache however many workers read it.
"""

from __future__ import annotations

import itertools
import mmap
import multiprocessing as mp
import pickle
import struct
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

from ...progress import progress

_MAGIC = b"SCNOBJ01"
_ALIGN = 4096


class Stored:
    """A handle to a value spilled to a file; tasks receive the value, memory-mapped."""

    __slots__ = ("path",)

    def __init__(self, path: Path):
        self.path = Path(path)


def save_object(path: Path, value: Any) -> None:
    buffers: List[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    table = struct.pack(
        f"<{2 * len(raws)}Q", *itertools.chain.from_iterable((0, r.nbytes) for r in raws)
    )
    start = len(_MAGIC) + 16 + len(table) + len(head)
    offsets, pos = [], -(-start // _ALIGN) * _ALIGN
    for r in raws:
        offsets.append(pos)
        pos = -(-(pos + r.nbytes) // _ALIGN) * _ALIGN
    table = struct.pack(
        f"<{2 * len(raws)}Q",
        *itertools.chain.from_iterable((o, r.nbytes) for o, r in zip(offsets, raws)),
    )
    with open(path, "wb") as f:
        f.write(_MAGIC + struct.pack("<QQ", len(raws), len(head)) + table + head)
        for o, r in zip(offsets, raws):
            f.seek(o)
            f.write(r)
        f.truncate(max(pos, f.tell()))


def load_object(path: Path) -> Any:
    """The value saved at ``path``; its arrays are read-only views of a private memory map."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    if bytes(view[: len(_MAGIC)]) != _MAGIC:
        raise ValueError(f"{path} is not a spilled counting object")
    n, head_len = struct.unpack_from("<QQ", view, len(_MAGIC))
    at = len(_MAGIC) + 16
    table = struct.unpack_from(f"<{2 * n}Q", view, at)
    head = view[at + 16 * n : at + 16 * n + head_len]
    bufs = [view[table[2 * i] : table[2 * i] + table[2 * i + 1]] for i in range(n)]
    return pickle.loads(head, buffers=bufs)


def _resolve(arg: Any) -> Any:
    return load_object(arg.path) if isinstance(arg, Stored) else arg


def _run(job: Tuple[Callable, Sequence[Any], List[Path]]) -> Any:
    fn, args, outs = job
    result = fn(*[_resolve(a) for a in args])
    for path, value in zip(outs, result[: len(outs)]):
        save_object(path, value)
    return result[-1]


def _init_worker() -> None:
    """A counting worker: glibc keeps its freed memory, and it dies with the run that forked it
    (a killed build_fgrams.py must not leave workers behind)."""
    from ...malloc import keep_large_allocations
    from ...supervision import die_with_parent

    keep_large_allocations()
    die_with_parent()


class LocalExecutor:
    """Tasks on ``processes`` forked workers of this machine, spilling to ``work``."""

    name = "local"

    def __init__(self, processes: int, work: Path):
        self.cpus_per_node = self.cpus_total = processes
        self.nodes = 1
        self.work = Path(work)
        (self.work / "objects").mkdir(parents=True, exist_ok=True)
        self._ids = itertools.count()
        self._pool = mp.get_context("fork").Pool(processes, initializer=_init_worker)

    def map(
        self, fn: Callable, calls: Sequence[Sequence[Any]], num_big: int = 0, desc: str = ""
    ) -> Tuple[List[List[Stored]], List[Any]]:
        """Run ``fn(*args)`` for each of ``calls``; returns each call's ``num_big`` stored outputs
        and its last (small) output, in call order."""
        jobs, handles = [], []
        for args in calls:
            outs = [self.work / "objects" / f"{next(self._ids):08d}.obj" for _ in range(num_big)]
            jobs.append((fn, list(args), outs))
            handles.append([Stored(p) for p in outs])
        smalls = []
        it = self._pool.imap(_run, jobs)
        for small in progress(it, total=len(jobs), desc=desc, unit="task", disable=not desc):
            smalls.append(small)
        return handles, smalls

    def free(self, handles: Sequence[Stored]) -> None:
        for h in handles:
            h.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
