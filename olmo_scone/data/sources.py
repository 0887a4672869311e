"""Opening token files for later stages: a prepared directory, or raw memmaps by glob."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..errors import fail
from .manifest import MANIFEST_NAME, load_manifest
from .tokenizers import resolve_tokenizer


@dataclasses.dataclass
class TokenFile:
    path: Path
    dtype: np.dtype
    length: int
    split: str
    relpath: str  # relative to the token directory (or the file name for globs)


@dataclasses.dataclass
class TokenFiles:
    files: List[TokenFile]
    tokenizer: dict  # name, sha256, vocab_size, eos_token_id, pad_token_id
    fingerprint: Optional[str]  # of the token directory's manifest; None for bare globs
    root: Optional[Path]

    @property
    def num_tokens(self) -> int:
        return sum(f.length for f in self.files)


#: a range check reads every value of files up to this many values in all; past it, sampled chunks
FULL_CHECK_VALUES = 1 << 32
#: how many evenly spaced chunks a sampled check reads of each file (plus its first and last)
SAMPLED_CHUNKS = 64


def chunk_starts(length: int, chunk: int, full: bool) -> List[int]:
    """Where a range check reads ``chunk`` values: everywhere, or the first, the last and
    :data:`SAMPLED_CHUNKS` evenly spaced chunks."""
    if full or length <= chunk * (SAMPLED_CHUNKS + 2):
        return list(range(0, length, chunk))
    step = length // (SAMPLED_CHUNKS + 1)
    return sorted({0, max(0, length - chunk), *range(step, length - chunk, step)})


def check_token_ids(
    f: TokenFile, vocab_size: int, tokenizer: str, chunk: int = 1 << 24, full: bool = True
) -> None:
    """Ids at or above the tokenizer's vocabulary (uint32 files read as uint16 by another
    tokenizer's dtype, a file edited by hand) would count and train nonsense, or end a run with an
    IndexError mid-way: one line naming the file instead. ``full``: every id; else sampled chunks."""
    if not f.length:
        return
    data = np.memmap(f.path, dtype=f.dtype, mode="r")
    for lo in chunk_starts(f.length, chunk, full):
        top = int(data[lo : lo + chunk].max())
        if top >= vocab_size:
            fail(
                f"{f.path}: token id {top} is not below {tokenizer}'s vocabulary size {vocab_size}: the file was "
                f"written with another tokenizer or dtype (read as {f.dtype.name}), or edited"
            )


def check_all_token_ids(files: "TokenFiles") -> None:
    """:func:`check_token_ids` over every file: a full pass up to :data:`FULL_CHECK_VALUES` ids in
    all (seconds), sampled chunks past it."""
    full = files.num_tokens <= FULL_CHECK_VALUES
    tok = files.tokenizer
    for f in files.files:
        check_token_ids(f, int(tok["vocab_size"]), str(tok.get("name")), full=full)


def open_token_files(
    spec: str, split: str = "train", tokenizer: Optional[str] = None
) -> TokenFiles:
    """``spec``: a directory made by prepare_data.py (its ``split``), or a glob of raw memmap files.

    For a glob the tokenizer must be named, since bare files do not say which one made them.
    """
    p = Path(spec)
    if p.is_dir() and (p / MANIFEST_NAME).is_file():
        m = load_manifest(p)
        if tokenizer is not None and resolve_tokenizer(tokenizer).sha256 != m.tokenizer["sha256"]:
            fail(f"{p} was tokenized with {m.tokenizer['name']}, not {tokenizer}")
        info = m.split(split)
        files = [
            TokenFile(p / f["path"], m.dtype, f["tokens"], split, f["path"]) for f in info["files"]
        ]
        if sum(f.length for f in files) == 0:
            fail(f"{p}: the {split} split holds no tokens")
        return TokenFiles(files, m.tokenizer, m.data["fingerprint"], p)
    if p.is_dir():
        fail(
            f"{p} has no {MANIFEST_NAME}; pass a directory made by scripts/prepare_data.py or a glob of .npy files"
        )
    if not _expand(spec):
        fail(f"no token files at {spec}")
    if tokenizer is None:
        fail("bare token files need --tokenizer (the name they were tokenized with)")
    return open_token_paths([spec], tokenizer, split)


def _expand(spec: str) -> List[Path]:
    """The files a path or glob names, sorted."""
    found = (
        sorted(Path(x) for x in glob.glob(spec)) if any(c in spec for c in "*?[") else [Path(spec)]
    )
    return [x for x in found if x.is_file()]


def open_token_paths(specs: List[str], tokenizer: str, split: str = "train") -> TokenFiles:
    """OLMo's ``data.paths``: raw memmap token files (``.npy`` without a header), as local paths or
    globs. Their dtype comes from the tokenizer; every id must be below its vocabulary size; their
    fingerprint is a hash of every file's name, length and content, so a sidecar made for them
    (tag_fgrams.py on the same paths) and a run trained on them can be bound to exactly these files."""
    tok = resolve_tokenizer(tokenizer)
    paths: List[Path] = []
    for spec in specs:
        if "://" in str(spec):
            fail(
                f"{spec}: remote token files are not read directly; copy them to local (or mounted) storage"
            )
        found = _expand(str(spec))
        if not found:
            fail(f"no token files at {spec}")
        paths += found
    names = [x.name for x in paths]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        fail(f"two token files are both named {dup}: their sidecar files would collide; rename one")
    files = []
    for x in paths:
        size = x.stat().st_size
        if size % tok.dtype.itemsize:
            fail(f"{x}: {size} bytes is not a whole number of {tok.dtype.name} tokens")
        files.append(TokenFile(x, tok.dtype, size // tok.dtype.itemsize, split, x.name))
    if sum(f.length for f in files) == 0:
        fail(f"the token files at {', '.join(map(str, specs))} are empty")
    for f in files:
        check_token_ids(f, int(tok.vocab_size), tok.name)
    return TokenFiles(files, tok.to_dict(), files_fingerprint(files), None)


def files_fingerprint(files: List[TokenFile]) -> str:
    """sha256 over each file's name, length and content sha256 (reads every byte once)."""
    import hashlib
    import json

    from ..atomic import sha256_file

    entries = [[f.relpath, f.length, sha256_file(f.path)] for f in files]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()
