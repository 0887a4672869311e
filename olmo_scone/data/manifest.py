"""``manifest.json``: what a prepared token directory holds, and the check that it is whole.

A prepared directory looks like::

    DIR/manifest.json
    DIR/train/part-<i>.npy          raw memmap token ids (no .npy header: OLMo's format)
    DIR/train/part-<i>.csv.gz       one row per document: start,end,id,src,line (dolma's)
    DIR/valid/...                   the same for the validation split

The manifest records the tokenizer (file name and sha256), dtype, token and document
counts per file and split, the split rule and the source files. ``docs/formats.md``
documents every key. Later stages (f-gram counting, tagging, training) open token
files only through :func:`load_manifest`, which refuses a directory whose files do
not match what the manifest says.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..errors import fail

MANIFEST_NAME = "manifest.json"
FORMAT = "olmo-scone/tokens"
FORMAT_VERSION = 1
SPLITS = ("train", "valid")


@dataclasses.dataclass
class TokenManifest:
    root: Path
    data: Dict[str, Any]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data["dtype"])

    @property
    def tokenizer(self) -> Dict[str, Any]:
        return self.data["tokenizer"]

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer["eos_token_id"])

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer["pad_token_id"])

    def split(self, name: str) -> Dict[str, Any]:
        if name not in self.data["splits"]:
            fail(f"{self.root}: no split {name!r} (has: {', '.join(self.data['splits'])})")
        return self.data["splits"][name]

    def token_files(self, split: str = "train") -> List[Path]:
        return [self.root / f["path"] for f in self.split(split)["files"]]

    def metadata_files(self, split: str = "train") -> List[Path]:
        return [self.root / f["metadata"] for f in self.split(split)["files"]]

    def num_tokens(self, split: str = "train") -> int:
        return int(self.split(split)["tokens"])

    def memmaps(self, split: str = "train") -> List[np.memmap]:
        return [
            np.memmap(p, dtype=self.dtype, mode="r")
            for p in self.token_files(split)
            if p.stat().st_size
        ]


def read_manifest(root: Path) -> Dict[str, Any] | None:
    """The raw manifest of ``root``, or ``None`` if it has none (no validation)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(f"{path} is corrupt ({e}); re-run scripts/prepare_data.py with --overwrite")


def load_manifest(root: str | Path) -> TokenManifest:
    """Open a prepared token directory, checking that every file is present and whole."""
    root = Path(root)
    if not root.exists():
        fail(f"token directory does not exist: {root}")
    data = read_manifest(root)
    if data is None:
        fail(f"{root} has no {MANIFEST_NAME}; is it a directory made by scripts/prepare_data.py?")
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        fail(f"{root}/{MANIFEST_NAME}: not a {FORMAT} v{FORMAT_VERSION} manifest")
    m = TokenManifest(root, data)
    itemsize = m.dtype.itemsize
    for split, info in data["splits"].items():
        for f in info["files"]:
            p = root / f["path"]
            if not p.is_file():
                fail(f"{root}: token file {f['path']} listed in the manifest is missing")
            if p.stat().st_size != f["tokens"] * itemsize:
                fail(
                    f"{root}: token file {f['path']} has {p.stat().st_size} bytes, the manifest says "
                    f"{f['tokens'] * itemsize}; the directory is corrupt, re-run prepare_data.py --overwrite"
                )
    return m
