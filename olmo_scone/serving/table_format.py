"""The exported f-gram embedding table: sharded safetensors, 16/32-bit or int8/int4 with row scales.

A shard ``table-<i>.safetensors`` holds rows ``[row_start, row_stop)`` of the ``[S, d]`` table:

* ``fp32`` / ``bf16`` / ``fp16``: tensor ``embeddings`` ``[rows, d]``;
* ``int8``: ``q`` int8 ``[rows, d]`` and ``scale`` fp32 ``[rows]`` (row = q * scale, symmetric,
  scale = max|row| / 127);
* ``int4``: ``q`` uint8 ``[rows, d/2]`` (two 4-bit values a byte, low nibble first, stored as
  value + 8 in 0..15) and ``scale`` fp32 ``[rows]`` (scale = max|row| / 7).

Shard metadata: ``format`` (``olmo-scone/fgram-table``), ``format_version``, ``dtype``,
``row_start``, ``row_stop``, ``d_model``, ``sha256`` of the tensors' bytes (in the order above).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Tuple

import torch

from ..errors import fail

FORMAT = "olmo-scone/fgram-table"
FORMAT_VERSION = "2"  # 2: tensor names unique across shards (stored_name)
#: the serving artifact (manifest.json): version 2 added the matcher's index files (matcher/),
#: 4 the list of every other file with its size and sha256 (serving/manifest.py)
ARTIFACT_FORMAT = "olmo-scone/serving-artifact"
#: 5: the main model in GPT-2's layout for vLLM (``vllm/``, manifest key ``vllm``)
ARTIFACT_VERSION = 5
#: artifact versions this code reads (older ones leave config.yaml and the Hugging Face files
#: unchecked; version 4 has no vllm/ folder, which only the vLLM plugin needs)
READABLE_ARTIFACT_VERSIONS = (4, 5)
DTYPES = ("fp32", "bf16", "fp16", "int8", "int4")
FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def bytes_per_row(dtype: str, d_model: int) -> int:
    if dtype in FLOAT_DTYPES:
        return d_model * torch.finfo(FLOAT_DTYPES[dtype]).bits // 8
    return (d_model if dtype == "int8" else d_model // 2) + 4


def quantize(emb: torch.Tensor, dtype: str) -> Dict[str, torch.Tensor]:
    """``[rows, d]`` float -> the shard's tensors for ``dtype``."""
    if dtype in FLOAT_DTYPES:
        return {"embeddings": emb.to(FLOAT_DTYPES[dtype]).contiguous()}
    x = emb.float()
    if dtype == "int8":
        scale = x.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(x / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return {"q": q.contiguous(), "scale": scale.contiguous()}
    if dtype == "int4":
        if x.shape[1] % 2:
            fail("int4 tables need an even d_model")
        scale = x.abs().amax(dim=1).clamp(min=1e-12) / 7.0
        q = (torch.round(x / scale[:, None]).clamp(-7, 7) + 8).to(torch.uint8)
        return {"q": (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous(), "scale": scale.contiguous()}
    fail(f"unknown table dtype {dtype!r}; choose one of {', '.join(DTYPES)}")


def dequantize(tensors: Dict[str, torch.Tensor], dtype: str) -> torch.Tensor:
    """The shard's tensors -> float rows (fp32 for int8/int4; the stored dtype otherwise)."""
    if dtype in FLOAT_DTYPES:
        return tensors["embeddings"]
    q, scale = tensors["q"], tensors["scale"]
    if dtype == "int8":
        return q.float() * scale[:, None]
    lo, hi = (q & 0x0F).float() - 8, (q >> 4).float() - 8
    return torch.stack([lo, hi], dim=2).reshape(q.shape[0], -1) * scale[:, None]


def tensors_sha256(tensors: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(
            t.view(torch.uint8).numpy().tobytes()
            if t.dtype != torch.bfloat16
            else t.view(torch.int16).numpy().tobytes()
        )
    return h.hexdigest()


def stored_name(row_start: int, part: str) -> str:
    """A table tensor's name in its shard file, unique across shards (``fgram_table.<first row>.<part>``),
    so the shards of one table could share a safetensors index without their names colliding."""
    return f"fgram_table.{row_start:012d}.{part}"


def part_name(name: str) -> str:
    """``embeddings`` / ``q`` / ``scale`` from a stored name (or an older shard's plain name)."""
    return name.rsplit(".", 1)[-1]


def write_shard(
    path: Path,
    tensors: Dict[str, torch.Tensor],
    dtype: str,
    row_start: int,
    row_stop: int,
    d_model: int,
) -> str:
    from ..atomic import atomic_write_bytes
    from ..safetensors_bytes import safetensors_bytes

    digest = tensors_sha256(tensors)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": dtype,
        "row_start": str(row_start),
        "row_stop": str(row_stop),
        "d_model": str(d_model),
        "sha256": digest,
    }
    stored = {stored_name(row_start, k): v for k, v in tensors.items()}
    atomic_write_bytes(
        path, safetensors_bytes(stored, meta)
    )  # same rows, same bytes, whoever writes them
    return digest


def read_shard(path: Path, verify: bool = True) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A shard's tensors and metadata; with ``verify``, its checksum is recomputed and compared."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if not path.is_file():
        fail(f"table shard missing: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = {part_name(k): v for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        fail(f"table shard {path} is unreadable ({e}); it is truncated or corrupt")
    if meta.get("format") != FORMAT:
        fail(f"{path} is not an f-gram table shard")
    if verify and tensors_sha256(tensors) != meta.get("sha256"):
        fail(f"table shard {path} does not match its checksum; it is corrupt (re-export it)")
    return tensors, meta
