"""Pre-tagging a training set: a sidecar of f-gram rows aligned with the token files.

As in the paper, matching is done once, offline, so training reads the longest f-gram
of every position from disk instead of matching on the fly. Layout::

    OUT/fgram_tags.json                 binds the sidecar to its token files and vocabulary
    OUT/matcher/*.npy                   the host matcher's index (as in a serving artifact), which
                                        training ranks memory-map and share through the page cache
    OUT/<relpath>.fgram.npy             int32 raw memmap, one entry per token position:
                                        the vocabulary row of the longest f-gram ending
                                        there, or -1 (lengths: the vocabulary's ``lengths``)

``fgram_tags.json`` records the token directory's fingerprint and every file's length,
and the vocabulary's sha256, so the trainer can refuse a sidecar that belongs to other
token files or another vocabulary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..atomic import atomic_directory, atomic_write_json
from ..data.sources import TokenFiles
from ..errors import fail
from ..progress import progress
from .matching import FgramMatcher
from .vocab import FgramVocab

TAGS_FORMAT = "olmo-scone/fgram-tags"
TAGS_VERSION = 1
TAGS_MANIFEST = "fgram_tags.json"


def tag_file(matcher: FgramMatcher, path: str, dtype: str, length: int, dest: Path) -> int:
    """Write the sidecar of one token file to ``dest``; returns how many positions end an f-gram."""
    tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r") if length else np.zeros(0, dtype)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    matched = 0
    step = 1 << 22
    # ordinary writes, not a writable memmap: on a full disk a write raises ENOSPC (one error
    # line, the temporary directory removed) where a memmap's page fault would kill us with SIGBUS
    with open(dest, "wb") as out_f:
        for start in range(0, length, step):
            lo = max(0, start - (matcher.max_n - 1))
            rows, _ = matcher.match(np.asarray(tokens[lo : start + step]))
            rows = rows[start - lo :]
            out_f.write(np.ascontiguousarray(rows, dtype=np.int32).tobytes())
            matched += int(np.count_nonzero(rows >= 0))
    return matched


def tag_token_files(
    files: TokenFiles,
    vocab: FgramVocab,
    vocab_path: Path,
    out: Path,
    overwrite: bool = False,
    ray_address: Optional[str] = None,
) -> Dict:
    """Tag every file of ``files``: here, one file after another, or (``ray_address``) one Ray task
    per file, writing into ``out`` (which every node must then reach at the same path)."""
    vocab.check_tokenizer(files.tokenizer["sha256"], what="the token files")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a directory for the sidecar")
    if out.exists() and any(out.iterdir()) and not overwrite:
        fail(f"output directory {out} is not empty; pass --overwrite to replace it")
    matcher = FgramMatcher(vocab, int(files.tokenizer["vocab_size"]))
    t0 = time.time()
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        jobs = [
            (
                str(Path(f.path).resolve()),
                f.dtype.name,
                int(f.length),
                tmp / f"{f.relpath}.fgram.npy",
            )
            for f in files.files
        ]
        if ray_address is None:
            matched = _tag_here(matcher, jobs, files.num_tokens)
        else:
            matched = _tag_on_ray(ray_address, matcher, jobs)
        entries = [
            {
                "split": f.split,
                "tokens": f.relpath,
                "path": f"{f.relpath}.fgram.npy",
                "positions": int(f.length),
                "matched": m,
            }
            for f, m in zip(files.files, matched)
        ]
        total = sum(e["positions"] for e in entries)
        meta = {
            "format": TAGS_FORMAT,
            "format_version": TAGS_VERSION,
            "tokens_root": str(files.root.resolve()) if files.root else None,
            "tokens_fingerprint": files.fingerprint,
            "tokenizer_sha256": files.tokenizer["sha256"],
            "vocab_path": str(Path(vocab_path).resolve()),
            "vocab_sha256": vocab.sha256,
            "num_fgrams": len(vocab),
            "max_n": vocab.max_n,
            "files": entries,
            "positions": total,
            "matched_fraction": round(sum(e["matched"] for e in entries) / max(1, total), 6),
            "wall_time_s": round(time.time() - t0, 2),
        }
        meta["matcher"] = {"folder": "matcher", **matcher.save(tmp / "matcher")}
        atomic_write_json(tmp / TAGS_MANIFEST, meta)
    return meta


def _tag_here(matcher: FgramMatcher, jobs: List[Tuple], num_tokens: int) -> List[int]:
    bar = progress(total=num_tokens, desc="tagging", unit="tok", unit_scale=True)
    matched = []
    for job in jobs:
        matched.append(tag_file(matcher, *job))
        bar.update(job[2])
    bar.close()
    return matched


def _tag_on_ray(address: str, matcher: FgramMatcher, jobs: List[Tuple]) -> List[int]:
    """One Ray task per token file; the matcher goes into the object store once and each node's
    workers read it there without copying."""
    from .counting.ray_executor import RayExecutor

    ex = RayExecutor(address)
    try:
        shared = ex.put(matcher)
        _, matched = ex.map(_tag_task, [(shared, *job) for job in jobs], desc="tagging")
        return matched
    finally:
        ex.close()


def _tag_task(matcher: FgramMatcher, path: str, dtype: str, length: int, dest: Path):
    try:
        return (tag_file(matcher, path, dtype, length, dest),)
    except FileNotFoundError as e:
        import socket

        fail(
            f"cannot read or write {e.filename} on node {socket.gethostname()}: every node must see --tokens "
            "and --out at the same paths (shared storage)"
        )


def load_tags_manifest(out: Path) -> Dict:
    p = Path(out) / TAGS_MANIFEST
    if not p.is_file():
        fail(
            f"{out} is not an f-gram sidecar (no {TAGS_MANIFEST}); make one with scripts/tag_fgrams.py"
        )
    meta = json.loads(p.read_text())
    if meta.get("format") != TAGS_FORMAT:
        fail(f"{p}: not an {TAGS_FORMAT} manifest")
    return meta
