"""The f-gram vocabulary file: safetensors, written atomically, validated on load.

Tensors (row r is the r-th most frequent f-gram; ties as in :mod:`.counting`):

* ``tokens``  int32 ``[S, K]`` token ids, left-aligned, padded with -1;
* ``lengths`` int8 ``[S]``, 2..K;
* ``counts``  int64 ``[S]`` occurrences in the corpus.

Metadata (all strings, as safetensors requires): ``format`` (``olmo-scone/fgram-vocab``),
``format_version``, ``max_n`` (K), ``min_count``, ``num_fgrams`` (S as asked) and
``size`` (rows actually present), ``tokenizer_name``, ``tokenizer_sha256``,
``vocab_size``, ``eos_token_id``, ``pad_token_id``, ``corpus_tokens``,
``corpus_fingerprint`` (of the token directory's manifest), ``sha256`` of the three
tensors' bytes (the vocabulary's identity, recorded by every artifact built on it).
``docs/formats.md`` has the same list. Nothing run-dependent (no wall time) is recorded
and the header is written with sorted keys (``safetensors_bytes.py``), so the same corpus
and settings give the same file, byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..atomic import atomic_file
from ..errors import fail

FORMAT = "olmo-scone/fgram-vocab"
FORMAT_VERSION = "1"


@dataclasses.dataclass
class FgramVocab:
    tokens: np.ndarray  # int32 [S, K]
    lengths: np.ndarray  # int8 [S]
    counts: np.ndarray  # int64 [S]
    metadata: Dict[str, str]

    @property
    def max_n(self) -> int:
        return int(self.tokens.shape[1])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def sha256(self) -> str:
        return content_sha256(self.tokens, self.lengths, self.counts)

    def check_tokenizer(self, tokenizer_sha256: str, what: str = "the model") -> None:
        """Refuse to combine this vocabulary with another tokenizer's ids."""
        mine = self.metadata.get("tokenizer_sha256")
        if mine != tokenizer_sha256:
            fail(
                f"f-gram vocabulary was built with tokenizer {self.metadata.get('tokenizer_name')} "
                f"(sha256 {str(mine)[:12]}), but {what} uses sha256 {tokenizer_sha256[:12]}; "
                "rebuild the vocabulary from token files of the same tokenizer"
            )


def content_sha256(tokens: np.ndarray, lengths: np.ndarray, counts: np.ndarray) -> str:
    h = hashlib.sha256()
    for a, dt in ((tokens, np.int32), (lengths, np.int8), (counts, np.int64)):
        h.update(np.ascontiguousarray(a, dtype=dt).tobytes())
    return h.hexdigest()


def save_vocab(
    path: str | Path,
    tokens: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    meta: Dict[str, object],
) -> str:
    """Write the vocabulary atomically; returns its content sha256."""
    from ..safetensors_bytes import safetensors_bytes

    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    lengths = np.ascontiguousarray(lengths, dtype=np.int8)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    digest = content_sha256(tokens, lengths, counts)
    metadata = {k: str(v) for k, v in meta.items()}
    metadata.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        max_n=str(tokens.shape[1]),
        size=str(len(tokens)),
        sha256=digest,
    )
    data = safetensors_bytes(
        {"tokens": tokens, "lengths": lengths, "counts": counts}, metadata
    )  # same content, same bytes
    with atomic_file(path, "wb") as f:
        f.write(data)
    return digest


def is_vocab_file(path: Path) -> bool:
    """Whether ``path`` is an f-gram vocabulary file (its safetensors header says so; nothing else read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # not a safetensors file at all (safetensors raises its own error types)
        return False


def load_vocab(
    path: str | Path, tokenizer_sha256: Optional[str] = None, verify: bool = True
) -> FgramVocab:
    """Open and validate a vocabulary file (optionally against a tokenizer's sha256)."""
    from safetensors import SafetensorError
    from safetensors.numpy import safe_open

    path = Path(path)
    if not path.is_file():
        fail(f"f-gram vocabulary not found: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        fail(f"{path} is not a readable safetensors file ({e}); is it truncated?")
    if meta.get("format") != FORMAT:
        fail(
            f"{path} is not an f-gram vocabulary (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        fail(f"{path}: unsupported vocabulary format version {meta.get('format_version')}")
    missing = {"tokens", "lengths", "counts"} - set(arrays)
    if missing:
        fail(f"{path}: missing tensors {sorted(missing)}")
    vocab = FgramVocab(arrays["tokens"], arrays["lengths"], arrays["counts"], dict(meta))
    if verify and vocab.sha256 != meta.get("sha256"):
        fail(f"{path}: content does not match its recorded sha256; the file is corrupt")
    if tokenizer_sha256 is not None:
        vocab.check_tokenizer(tokenizer_sha256)
    return vocab
