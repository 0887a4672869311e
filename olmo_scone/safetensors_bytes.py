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
from typing import Dict, Mapping

import numpy as np

#: numpy dtypes by safetensors code; torch's (bfloat16 among them) in _torch_array. numpy arrays are
#: written without importing torch: counting and tagging run where only numpy is installed.
_NUMPY_CODES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def _torch_array(t) -> tuple[str, list, bytes]:
    import torch

    codes = {
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
    if t.dtype not in codes:
        raise TypeError(f"dtype {t.dtype} has no safetensors code here")
    t = t.detach().cpu().contiguous()
    flat = t.reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return codes[t.dtype], list(t.shape), data


def _numpy_array(a: np.ndarray) -> tuple[str, list, bytes]:
    code = _NUMPY_CODES.get(a.dtype.name)
    if code is None:
        raise TypeError(f"dtype {a.dtype} has no safetensors code here")
    little = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return code, list(a.shape), little.tobytes()


def safetensors_bytes(
    tensors: Mapping[str, object], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The file for ``tensors`` (laid out in name order) and string ``metadata``, keys sorted."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        try:
            code, shape, data = _numpy_array(t) if isinstance(t, np.ndarray) else _torch_array(t)
        except TypeError as e:
            raise TypeError(f"tensor {name}: {e}") from None
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)
