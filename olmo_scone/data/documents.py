"""Reading documents from Dolma-format JSON lines and plain text, with clear errors.

Accepted inputs (files, directories searched recursively, or glob patterns):

* Dolma format: ``.jsonl``/``.json`` (one JSON object per line), optionally ``.gz`` or
  ``.zst`` compressed. Each object needs a string ``text``; ``id`` is used when present
  (otherwise ``<file>:<line>``), other fields are ignored.
* Plain text: ``.txt`` (optionally ``.gz``), one document per file, or one per
  blank-line-separated block with ``blocks=True``.

Everything is decoded as strict UTF-8: a file that is not UTF-8 is an error that
names the file and line, never silently replaced characters.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import json
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, List, Sequence

from ..errors import fail, positive_int

JSON_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)
COMPRESSIONS = ("", ".gz", ".zst")


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str  # the file it came from


def _split_compression(name: str) -> tuple[str, str]:
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            return name[: -len(comp)], comp
    return name, ""


def document_kind(path: Path) -> str | None:
    """``"json"``, ``"text"`` or ``None`` (not a document file) from the file name."""
    base, _ = _split_compression(path.name)
    if base.endswith(JSON_SUFFIXES):
        return "json"
    if base.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def resolve_sources(specs: Sequence[str], input_format: str = "auto") -> List[Path]:
    """Expand files, directories and globs into a sorted, de-duplicated list of files.

    With ``input_format`` ``"json"`` or ``"text"``, files named on the command line are
    taken as that format whatever their extension (e.g. WikiText's ``wiki.valid.tokens``).
    """
    files: list[Path] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            if not matches:
                fail(f"no files match {spec!r}")
            candidates = matches
        else:
            p = Path(spec)
            if not p.exists():
                fail(f"input path does not exist: {spec}")
            candidates = [p]
        for p in candidates:
            if p.is_dir():
                found = sorted(q for q in p.rglob("*") if q.is_file() and document_kind(q))
                if not found:
                    fail(
                        f"directory {p} holds no document files (.jsonl[.gz|.zst], .json.gz, .txt)"
                    )
                files.extend(found)
            elif input_format == "auto" and document_kind(p) is None:
                fail(
                    f"{p}: not a document file; expected .jsonl, .jsonl.gz, .jsonl.zst, .json.gz or .txt "
                    "(or pass --input-format text|json)"
                )
            else:
                files.append(p)
    out, seen = [], set()
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        fail("no input files given")
    return out


def _open_binary(path: Path) -> BinaryIO:
    _, comp = _split_compression(path.name)
    if comp == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if comp == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]  # zstd readers have no readline
    return open(path, "rb")


def _decode(raw: bytes, path: Path, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{path}: {where} is not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})")


def _read_json_documents(path: Path) -> Iterator[Document]:
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                line = _decode(raw, path, f"line {lineno}")
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{path}: line {lineno} is not valid JSON ({e.msg})")
                if not isinstance(obj, dict):
                    fail(f"{path}: line {lineno} is not a JSON object")
                if "text" not in obj:
                    fail(
                        f"{path}: line {lineno} has no 'text' field (Dolma documents need 'id' and 'text')"
                    )
                text = obj["text"]
                if not isinstance(text, str):
                    fail(
                        f"{path}: line {lineno}: 'text' must be a string, got {type(text).__name__}"
                    )
                doc_id = obj.get("id")
                yield Document(
                    str(doc_id) if doc_id is not None else f"{path.name}:{lineno}", text, str(path)
                )
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            fail(f"input file disappeared: {path}")
        fail(
            f"{path}: cannot read ({e.__class__.__name__}: {e}); is the file truncated or not really compressed?"
        )
    except Exception as e:  # zstandard raises its own error type for corrupt frames
        if type(e).__name__ == "ZstdError":
            fail(f"{path}: corrupt zstd stream ({e})")
        raise


def _read_text_documents(path: Path, blocks: bool) -> Iterator[Document]:
    try:
        with _open_binary(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        fail(f"{path}: cannot read ({e})")
    text = _decode(raw, path, "the file")
    if not blocks:
        yield Document(path.name, text, str(path))
        return
    block: list[str] = []
    start = 1
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.strip():
            if not block:
                start = lineno
            block.append(line)
        elif block:
            yield Document(f"{path.name}:{start}", "".join(block), str(path))
            block = []
    if block:
        yield Document(f"{path.name}:{start}", "".join(block), str(path))


def iter_documents(
    files: Iterable[Path], text_blocks: bool = False, input_format: str = "auto"
) -> Iterator[Document]:
    """Every document of ``files`` in order (empty-text documents included; callers skip)."""
    for path in files:
        kind = document_kind(path) if input_format == "auto" else input_format
        if kind == "json":
            yield from _read_json_documents(path)
        else:
            yield from _read_text_documents(path, text_blocks)


def source_label(path: str | os.PathLike) -> str:
    """A short name for per-source statistics: the file name without its extensions."""
    name = Path(path).name
    base, _ = _split_compression(name)
    for suf in JSON_SUFFIXES + TEXT_SUFFIXES:
        if base.endswith(suf):
            return base[: -len(suf)]
    return base


def add_document_flags(p) -> None:
    """The reader options every tool that reads documents takes (prepare_data.py,
    train_tokenizer.py), so both read a corpus the same way."""
    p.add_argument(
        "--txt-blocks",
        action="store_true",
        help=".txt: one document per blank-line-separated block",
    )
    p.add_argument(
        "--input-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="read inputs as this format whatever their extension (default: by extension)",
    )
    p.add_argument(
        "--max-documents", type=positive_int, default=None, help="stop after this many documents"
    )
