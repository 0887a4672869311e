"""Opening an artifact's f-gram table and host matcher, checked against the model that will use
them: the part of serving that every server shares (the project's runtime, the Hugging Face class,
the vLLM plugin), with numpy, safetensors and torch only."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import fail
from ..fgrams.matching import FgramMatcher
from .table import FgramTable, load_artifact_manifest


def open_fgram_table(
    root: Path,
    mode: str,
    verify: bool,
    vocab_size: int,
    d_model: int,
    manifest: Optional[dict] = None,
):
    """The artifact's table and host matcher (in RAM or memory-mapped, ``mode``), checked against
    the model that will use them. Shared by the runtime, the Hugging Face class and the vLLM plugin."""
    m = manifest if manifest is not None else load_artifact_manifest(root)
    if manifest is None:
        check_vocabulary(root, m, verify)
    if int(m["d_model"]) != d_model:
        fail(f"{root}: table d_model {m['d_model']} does not match the model's {d_model}")
    if not m.get("matcher"):
        fail(f"{root}/manifest.json lists no matcher index: a table-only artifact cannot be served")
    matcher = FgramMatcher.load(
        root / m["matcher"]["folder"], m["matcher"], mmap=(mode == "mmap"), verify=verify
    )
    if matcher.num_fgrams != int(m["rows"]) or matcher.vocab_size != vocab_size:
        fail(
            f"{root}: the matcher's index ({matcher.num_fgrams} f-grams, vocab {matcher.vocab_size}) does not fit "
            f"the table ({m['rows']} rows) and model (vocab {vocab_size})"
        )
    return FgramTable(root, mode, verify), matcher


def check_vocabulary(root: Path, m: dict, verify: bool) -> None:
    """The artifact's vocabulary is the one its table was computed from: its recorded sha256 always
    (header only), its content too when ``verify`` (then read once and dropped)."""
    from safetensors import SafetensorError, safe_open

    from ..fgrams.vocab import load_vocab

    path = root / "fgrams.safetensors"
    if not path.is_file():
        fail(f"f-gram vocabulary missing: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            recorded = (f.metadata() or {}).get("sha256")
    except (SafetensorError, OSError, ValueError) as e:
        fail(f"{path} is not a readable safetensors file ({e}); is it truncated?")
    if recorded != m["vocab_sha256"]:
        fail(
            f"{root}: the f-gram vocabulary does not match the table's (sha256 {str(recorded)[:12]} vs {str(m['vocab_sha256'])[:12]})"
        )
    if verify:
        load_vocab(path, verify=True)  # content against its recorded sha256
