"""safetensors files whose bytes depend only on their content.

The ``safetensors`` writer keeps metadata in a hash map, so the same tensors and metadata give a
different header (key order) in every process: two exports of one checkpoint, or two builds of
one vocabulary, would differ byte for byte while holding the same values. This writer emits the
same format (an 8-byte little-endian header length, a JSON header padded with spaces to a multiple
of 8, then the tensors' bytes back to back) with every key sorted, so equal content gives equal
bytes. Files are read back with the ``safetensors`` library as before.
"""

from __future__ import annotations

import json
import struct
from typing import Dict, Mapping, Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _as_torch(a: Array) -> torch.Tensor:
    return (
        (a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a)))
        .detach()
        .cpu()
        .contiguous()
    )


def _raw(t: torch.Tensor) -> bytes:
    flat = t.reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def safetensors_bytes(
    tensors: Mapping[str, Array], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The file for ``tensors`` (laid out in name order) and string ``metadata``, keys sorted."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = _as_torch(tensors[name])
        if t.dtype not in _DTYPES:
            raise TypeError(f"tensor {name}: dtype {t.dtype} has no safetensors code here")
        data = _raw(t)
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)
