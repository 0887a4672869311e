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
from typing import Dict

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


def tag_token_files(files: TokenFiles, vocab: FgramVocab, vocab_path: Path, out: Path, overwrite: bool = False) -> Dict:
    vocab.check_tokenizer(files.tokenizer["sha256"], what="the token files")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a directory for the sidecar")
    if out.exists() and any(out.iterdir()) and not overwrite:
        fail(f"output directory {out} is not empty; pass --overwrite to replace it")
    matcher = FgramMatcher(vocab, int(files.tokenizer["vocab_size"]))
    t0 = time.time()
    entries = []
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        bar = progress(total=files.num_tokens, desc="tagging", unit="tok", unit_scale=True)
        for f in files.files:
            tokens = np.memmap(f.path, dtype=f.dtype, mode="r") if f.length else np.zeros(0, f.dtype)
            dest = tmp / f"{f.relpath}.fgram.npy"
            dest.parent.mkdir(parents=True, exist_ok=True)
            matched = 0
            step = 1 << 22
            # ordinary writes, not a writable memmap: on a full disk a write raises ENOSPC (one error
            # line, the temporary directory removed) where a memmap's page fault would kill us with SIGBUS
            with open(dest, "wb") as out_f:
                for start in range(0, f.length, step):
                    lo = max(0, start - (vocab.max_n - 1))
                    rows, _ = matcher.match(np.asarray(tokens[lo : start + step]))
                    rows = rows[start - lo :]
                    out_f.write(np.ascontiguousarray(rows, dtype=np.int32).tobytes())
                    matched += int(np.count_nonzero(rows >= 0))
                    bar.update(len(rows))
            entries.append({"split": f.split, "tokens": f.relpath, "path": f"{f.relpath}.fgram.npy",
                            "positions": int(f.length), "matched": matched})  # fmt: skip
        bar.close()
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


def load_tags_manifest(out: Path) -> Dict:
    p = Path(out) / TAGS_MANIFEST
    if not p.is_file():
        fail(f"{out} is not an f-gram sidecar (no {TAGS_MANIFEST}); make one with scripts/tag_fgrams.py")
    meta = json.loads(p.read_text())
    if meta.get("format") != TAGS_FORMAT:
        fail(f"{p}: not an {TAGS_FORMAT} manifest")
    return meta
