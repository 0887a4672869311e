"""The f-gram table of a serving artifact, in host RAM or memory-mapped from disk.

``mode="ram"`` reads every shard into memory (pinned when CUDA is available, for fast
host-to-device copies). ``mode="mmap"`` maps each shard's tensor bytes with ``numpy.memmap``
(the safetensors header gives their offsets) and reads only the rows a batch gathers, so a table
far larger than RAM can serve. Either way every shard's checksum is verified when the artifact is
opened (``verify=False`` skips that, for very large tables already verified once), and the
artifact must match the model it serves: tokenizer, vocabulary and d_model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from ..errors import fail
from .table_format import FORMAT, dequantize, read_shard

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I8": np.int8, "U8": np.uint8}


def _mmap_tensors(path: Path) -> Dict[str, np.ndarray]:
    """Memory-map every tensor of a safetensors file (no copy, nothing read up front)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        out[name] = np.memmap(path, dtype=_NP[info["dtype"]], mode="r", offset=8 + n + lo, shape=tuple(info["shape"]))
    return out


class FgramTable:
    """Rows of the ``[S, d]`` table by index: ``table[rows]`` -> float32 tensor on the CPU."""

    device = torch.device("cpu")

    def __init__(self, artifact: str | Path, mode: str = "ram", verify: bool = True):
        if mode not in ("ram", "mmap"):
            fail(f"table mode must be ram or mmap, got {mode!r}")
        self.root = Path(artifact)
        self.manifest = load_artifact_manifest(self.root)
        m = self.manifest
        self.dtype, self.mode, self.d_model, self.rows = m["dtype"], mode, int(m["d_model"]), int(m["rows"])
        self.starts: List[int] = []
        self.shards: List[Dict] = []
        expect = 0
        for s in m["shards"]:
            path = self.root / s["file"]
            if not path.is_file():
                fail(f"table shard missing: {path}")
            if verify or mode == "ram":
                tensors, meta = read_shard(path, verify=verify)
                if verify and meta["sha256"] != s["sha256"]:
                    fail(f"table shard {path} is not the one the manifest lists (checksum differs)")
            if int(s["row_start"]) != expect:
                fail(f"{self.root}: shards do not cover the table contiguously at row {expect}")
            expect = int(s["row_stop"])
            if mode == "ram":
                t = {k: v.pin_memory() if torch.cuda.is_available() else v for k, v in tensors.items()}
            else:
                t = _mmap_tensors(path)
            self.starts.append(int(s["row_start"]))
            self.shards.append(t)
        if expect != self.rows:
            fail(f"{self.root}: shards cover {expect} rows, the manifest says {self.rows}")
        self._starts = np.asarray(self.starts)

    @property
    def shape(self):
        return (self.rows, self.d_model)

    ndim = 2

    def __len__(self) -> int:
        return self.rows

    def _take(self, shard: Dict, local: np.ndarray) -> torch.Tensor:
        if self.mode == "ram":
            idx = torch.from_numpy(local)
            return dequantize({k: v[idx] for k, v in shard.items()}, self.dtype).float()
        picked = {}
        for k, v in shard.items():
            a = np.asarray(v[local])
            picked[k] = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if self.dtype == "bf16" and k == "embeddings" \
                else torch.from_numpy(a)  # fmt: skip
        return dequantize(picked, self.dtype).float()

    def __getitem__(self, rows) -> torch.Tensor:
        r = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        out = torch.empty((len(r), self.d_model), dtype=torch.float32)
        shard_of = np.searchsorted(self._starts, r, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            out[torch.from_numpy(sel)] = self._take(self.shards[s], r[sel] - self.starts[s])
        return out


def load_artifact_manifest(root: Path) -> Dict:
    p = Path(root) / "manifest.json"
    if not p.is_file():
        fail(f"{root} is not a serving artifact (no manifest.json); make one with scripts/export_embeddings.py")
    m = json.loads(p.read_text())
    if m.get("format") != "olmo-scone/serving-artifact":
        fail(f"{p}: not an olmo-scone serving artifact")
    return m
