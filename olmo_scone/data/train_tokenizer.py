"""A byte-level BPE of one's own (``scripts/train_tokenizer.py``), trained on a corpus's train split.

OLMo users train with their own tokenizers (``tokenizer.identifier`` may be a path). This one is
GPT-NeoX-style: NFC, byte-level pre-tokenization with the GPT-2 split pattern (no prefix space),
byte-level decoding, every byte in the initial alphabet (nothing is ever unknown), and two special
tokens, ``<|endoftext|>`` (EOS, id 0) and ``<|padding|>`` (PAD, id 1), as in OLMo's own tokenizer.
It is trained only on the documents ``prepare_data.py`` puts in the train split with the same
``--valid-fraction`` and ``--seed``, so nothing held out shapes it. The file is written atomically;
every later stage identifies it by its sha256.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, List, Sequence

from ..errors import fail

EOS, PAD = "<|endoftext|>", "<|padding|>"
#: 256 byte symbols plus the two special tokens: a smaller vocabulary cannot encode every text
MIN_VOCAB_SIZE = 256 + 2


@dataclasses.dataclass
class TokenizerTraining:
    sources: Sequence[str]
    out: Path
    vocab_size: int
    valid_fraction: float = 0.05
    seed: int = 0
    min_frequency: int = 2
    text_blocks: bool = False
    input_format: str = "auto"
    max_documents: int | None = None


def train_texts(s: TokenizerTraining, files: List[Path]) -> Iterator[str]:
    """The texts of the documents prepare_data.py puts in the train split (same rule, same order:
    non-empty documents, ``--max-documents`` counting both splits)."""
    from ..progress import progress
    from .documents import iter_documents
    from .prepare import split_of

    index_of = {str(f): i for i, f in enumerate(files)}
    docs = progress(
        iter_documents(files, s.text_blocks, s.input_format), desc="reading documents", unit="doc"
    )
    n = 0
    for doc in docs:
        if not doc.text.strip():
            continue
        if s.max_documents is not None and n >= s.max_documents:
            return
        n += 1
        if split_of(s.seed, index_of[doc.source], doc.id, s.valid_fraction)[0] == "train":
            yield doc.text.strip()


def build_bpe(texts: Iterator[str], vocab_size: int, min_frequency: int = 2, progress: bool = True):
    """Train the BPE; returns a ``tokenizers.Tokenizer``."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def train_tokenizer(s: TokenizerTraining) -> dict:
    """Train and write ``s.out`` atomically; returns what resolve_tokenizer makes of the file."""
    import sys

    from ..atomic import atomic_write_text
    from .documents import resolve_sources
    from .tokenizers import resolve_tokenizer

    if s.vocab_size < MIN_VOCAB_SIZE:
        fail(
            f"--vocab-size {s.vocab_size} is below the byte alphabet: a byte-level BPE needs at least "
            f"{MIN_VOCAB_SIZE} ids (256 bytes + EOS + PAD)"
        )
    if not 0.0 <= s.valid_fraction <= 0.5:
        fail(f"--valid-fraction must be in [0, 0.5], got {s.valid_fraction}")
    files = resolve_sources(s.sources, s.input_format)
    texts = train_texts(s, files)
    first = next(texts, None)
    if first is None:
        fail("no train documents in the inputs: nothing to train a tokenizer on")

    def all_texts() -> Iterator[str]:
        yield first
        yield from texts

    tok = build_bpe(all_texts(), s.vocab_size, s.min_frequency, progress=sys.stderr.isatty())
    if tok.get_vocab_size() < s.vocab_size:
        print(
            f"note: the corpus supports only {tok.get_vocab_size():,} ids at min frequency {s.min_frequency}, "
            f"fewer than the {s.vocab_size:,} asked for",
            file=sys.stderr,
        )
    atomic_write_text(s.out, tok.to_str(pretty=True))
    spec = resolve_tokenizer.__wrapped__(str(s.out))  # uncached: the file is new
    return spec.to_dict()


def main(argv=None) -> int:
    from ..errors import ArgumentParser, non_negative_int, positive_int
    from ..locking import OutputLock
    from .documents import add_document_flags
    from .embedded import embedded_corpus_path

    p = ArgumentParser(
        prog="train_tokenizer.py",
        description="Train a byte-level BPE (GPT-NeoX-style, EOS and PAD special tokens) on the train "
        "split of documents, as prepare_data.py would split them.",
    )
    p.add_argument(
        "inputs", nargs="*", help="files, directories or globs (default: the embedded corpus)"
    )
    p.add_argument("--out", required=True, type=Path, help="the tokenizer.json to write")
    p.add_argument(
        "--vocab-size", required=True, type=positive_int, help=f"ids, at least {MIN_VOCAB_SIZE}"
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.05,
        help="as prepare_data.py's (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="as prepare_data.py's (default: %(default)s)",
    )
    p.add_argument(
        "--min-frequency",
        type=positive_int,
        default=2,
        help="pairs seen fewer times are not merged",
    )
    add_document_flags(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer file")
    a = p.parse_args(argv)
    from ..outputs import refuse_foreign, refuse_overlap

    inputs = a.inputs or [str(embedded_corpus_path())]
    refuse_overlap(a.out, {f"input {x}": x for x in inputs})
    if a.out.is_dir():
        fail(f"--out {a.out} is a directory; give a file name such as tokenizer.json")
    if a.out.exists() and not a.overwrite:
        fail(f"{a.out} exists; pass --overwrite to replace it")
    refuse_foreign(a.out, "a tokenizer file", _is_tokenizer_file, "train_tokenizer.py")
    with OutputLock(a.out, "--out"):
        spec = train_tokenizer(
            TokenizerTraining(
                inputs,
                a.out,
                a.vocab_size,
                a.valid_fraction,
                a.seed,
                a.min_frequency,
                a.txt_blocks,
                a.input_format,
                a.max_documents,
            )
        )
    print(
        f"wrote {a.out}: {spec['vocab_size']:,} ids, EOS {spec['eos_token_id']}, PAD {spec['pad_token_id']}, "
        f"sha256 {spec['sha256']}"
    )
    return 0


def _is_tokenizer_file(path: Path) -> bool:
    import json

    try:
        return "model" in json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
