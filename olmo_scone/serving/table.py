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
import mmap
import struct
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..errors import fail
from .manifest import check_fields, check_seal
from .table_format import (
    ARTIFACT_FORMAT,
    READABLE_ARTIFACT_VERSIONS,
    part_name,
    DTYPES,
    FLOAT_DTYPES,
    FORMAT,
    dequantize,
    read_shard,
)

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I8": np.int8, "U8": np.uint8}


def _mmap_tensors(path: Path) -> Dict[str, np.ndarray]:
    """Memory-map every tensor of a safetensors file (no copy, nothing read up front)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for stored, info in header.items():
        if stored == "__metadata__":
            continue
        name = part_name(stored)
        lo, hi = info["data_offsets"]
        arr = np.memmap(
            path, dtype=_NP[info["dtype"]], mode="r", offset=8 + n + lo, shape=tuple(info["shape"])
        )
        if hasattr(arr._mmap, "madvise") and hasattr(mmap, "MADV_RANDOM"):
            arr._mmap.madvise(
                mmap.MADV_RANDOM
            )  # lookups are random: readahead would only waste I/O and cache
        out[name] = arr
    return out


def _willneed(arr: np.memmap, local: np.ndarray) -> None:
    """Ask the kernel to start reading every row's pages at once (``MADV_WILLNEED``), so a gather
    of n uncached rows waits for about one I/O instead of n page faults one after another."""
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mmap, "MADV_WILLNEED"):
        return
    row = arr.strides[0]
    base = arr.offset % mmap.ALLOCATIONGRANULARITY  # where the array starts inside the mapping
    for r in np.unique(local).tolist():
        lo = base + r * row
        start = lo - lo % mmap.PAGESIZE
        mm.madvise(mmap.MADV_WILLNEED, start, lo + row - start)


class FgramTable:
    """Rows of the ``[S, d]`` table by index: ``table[rows]`` -> float32 tensor on the CPU."""

    device = torch.device("cpu")

    def __init__(
        self,
        artifact: str | Path,
        mode: str = "ram",
        verify: bool = True,
        willneed_rows: int = 1024,
    ):
        """``willneed_rows``: mmap gathers of at most this many rows first ask the kernel to read
        all their pages in parallel (0: plain page faults, one after another)."""
        self.willneed_rows = willneed_rows
        if mode not in ("ram", "mmap"):
            fail(f"table mode must be ram or mmap, got {mode!r}")
        self.root = Path(artifact)
        self.manifest = load_artifact_manifest(self.root)
        m = self.manifest
        self.dtype, self.mode, self.d_model, self.rows = (
            m["dtype"],
            mode,
            int(m["d_model"]),
            int(m["rows"]),
        )
        self.starts: List[int] = []
        self.shards: List[Dict] = []
        expect = 0
        for s in m["shards"]:
            path = self.root / s["file"]
            if not path.is_file():
                fail(f"table shard missing: {path}")
            check_shard_header(
                path, s, self.dtype, self.d_model
            )  # always: sizes and header, even with --no-verify
            if verify or mode == "ram":
                tensors, meta = read_shard(path, verify=verify)
                if verify and meta["sha256"] != s["sha256"]:
                    fail(f"table shard {path} is not the one the manifest lists (checksum differs)")
            if int(s["row_start"]) != expect:
                fail(f"{self.root}: shards do not cover the table contiguously at row {expect}")
            expect = int(s["row_stop"])
            if mode == "ram":
                t = {
                    k: v.pin_memory() if torch.cuda.is_available() else v
                    for k, v in tensors.items()
                }
            else:
                t = _mmap_tensors(path)
            self.starts.append(int(s["row_start"]))
            self.shards.append(t)
        if expect != self.rows:
            fail(f"{self.root}: shards cover {expect} rows, the manifest says {self.rows}")
        self._starts = np.asarray(self.starts)

    def remap(self) -> None:
        """Map the shards afresh. Pages mapped by a process cannot be evicted; a benchmark of cold
        reads drops the old mappings first (then ``posix_fadvise(DONTNEED)`` can evict the pages)."""
        if self.mode == "mmap":
            self.shards = [_mmap_tensors(self.root / s["file"]) for s in self.manifest["shards"]]

    @property
    def shape(self):
        return (self.rows, self.d_model)

    ndim = 2

    def __len__(self) -> int:
        return self.rows

    @property
    def transfer_dtype(self) -> torch.dtype:
        """What :meth:`gather` returns: the stored dtype for 16/32-bit tables (cast on the device,
        so half the bytes cross the bus), float32 for int8/int4 (dequantized on the host)."""
        return FLOAT_DTYPES.get(self.dtype, torch.float32)

    def _take(self, shard: Dict, local: np.ndarray, out: torch.Tensor) -> None:
        if self.dtype in FLOAT_DTYPES:
            src = shard["embeddings"]
            if self.mode == "ram":
                torch.index_select(src, 0, torch.from_numpy(local), out=out)
            else:  # numpy gathers straight into the (possibly pinned) output buffer
                if len(local) <= self.willneed_rows:
                    _willneed(src, local)
                dst = out.view(torch.int16).numpy() if out.dtype == torch.bfloat16 else out.numpy()
                np.take(src, local, axis=0, out=dst.view(src.dtype))
            return
        if self.mode == "ram":
            picked = {k: v[torch.from_numpy(local)] for k, v in shard.items()}
        else:
            picked = {k: torch.from_numpy(np.asarray(v[local])) for k, v in shard.items()}
        out.copy_(dequantize(picked, self.dtype))

    def gather(self, rows, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Rows ``[n, d]`` in :attr:`transfer_dtype` on the host, written into ``out`` when given
        (a pinned staging buffer on CUDA, so the copy to the device can be asynchronous)."""
        r = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        r = r.astype(np.int64, copy=False)
        if out is None:
            out = torch.empty((len(r), self.d_model), dtype=self.transfer_dtype)
        if len(r) and (r.min() < 0 or r.max() >= self.rows):
            fail(f"f-gram rows out of range [0, {self.rows}): {int(r.min())}..{int(r.max())}")
        if len(self.shards) == 1:
            self._take(self.shards[0], r, out)
            return out
        shard_of = np.searchsorted(self._starts, r, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            if len(sel) == len(r):
                self._take(self.shards[s], r - self.starts[s], out)
            else:
                part = torch.empty((len(sel), self.d_model), dtype=out.dtype)
                self._take(self.shards[s], r[sel] - self.starts[s], part)
                out[torch.from_numpy(sel)] = part
        return out

    def __getitem__(self, rows) -> torch.Tensor:
        """float32 rows (what the model's training path would have produced)."""
        return self.gather(rows).float()


def table_disk_bytes(root: Path, manifest: Optional[Dict] = None) -> int:
    """Bytes of an artifact's table shards on disk (what the host has to hold or map)."""
    m = manifest if manifest is not None else load_artifact_manifest(root)
    return sum((Path(root) / s["file"]).stat().st_size for s in m["shards"])


def load_artifact_manifest(root: Path) -> Dict:
    p = Path(root) / "manifest.json"
    if not p.is_file():
        fail(
            f"{root} is not a serving artifact (no manifest.json); make one with scripts/export_embeddings.py"
        )
    try:
        m = json.loads(p.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        fail(f"{p} is not valid JSON ({e}); the artifact is corrupt: re-export it")
    if not isinstance(m, dict) or m.get("format") != ARTIFACT_FORMAT:
        fail(f"{p}: not an olmo-scone serving artifact")
    if m.get("format_version") not in READABLE_ARTIFACT_VERSIONS:
        fail(
            f"{p}: serving artifact format version {m.get('format_version')}, this olmo-scone reads versions "
            f"{', '.join(map(str, READABLE_ARTIFACT_VERSIONS))}: re-export it (scripts/export_embeddings.py SAVE_FOLDER --out DIR --overwrite)"
        )
    missing = [k for k in ("dtype", "d_model", "rows", "shards") if k not in m]
    if missing:
        fail(f"{p}: missing {', '.join(missing)}; the artifact is corrupt: re-export it")
    check_seal(p, m)
    check_fields(Path(root), m)
    if m["dtype"] not in DTYPES:
        fail(f"{p}: table dtype {m['dtype']!r} is not one of {', '.join(DTYPES)}")
    return m


def _expected_tensors(dtype: str, rows: int, d_model: int) -> Dict[str, tuple]:
    """safetensors dtype and shape of each tensor of a shard of ``rows`` rows (table_format.py)."""
    if dtype in FLOAT_DTYPES:
        return {
            "embeddings": ({"fp32": "F32", "bf16": "BF16", "fp16": "F16"}[dtype], [rows, d_model])
        }
    q = ("I8", [rows, d_model]) if dtype == "int8" else ("U8", [rows, d_model // 2])
    return {"q": q, "scale": ("F32", [rows])}


def check_shard_header(path: Path, entry: Dict, dtype: str, d_model: int) -> None:
    """Without reading the rows: the file is as long as its header says, and the header's metadata,
    dtypes and shapes are the ones the manifest lists. A truncated shard or one from another export
    (another dtype, another row range) is refused at open instead of failing mid-serving."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        fail(f"table shard {path} is unreadable ({e}); it is truncated or corrupt")
    meta = header.pop("__metadata__", {}) or {}
    lo, hi = int(entry["row_start"]), int(entry["row_stop"])
    got = (
        meta.get("format"),
        meta.get("dtype"),
        meta.get("row_start"),
        meta.get("row_stop"),
        meta.get("d_model"),
    )
    if (
        got != (FORMAT, dtype, str(lo), str(hi), str(d_model))
        or meta.get("sha256") != entry["sha256"]
    ):
        fail(
            f"table shard {path} is not the one the manifest lists (it holds {got[1]} rows {got[2]}..{got[3]} "
            f"of d_model {got[4]}, checksum {str(meta.get('sha256'))[:12]}; the manifest: {dtype} rows {lo}..{hi} "
            f"of d_model {d_model}, checksum {str(entry['sha256'])[:12]})"
        )
    want = _expected_tensors(dtype, hi - lo, d_model)
    have = {part_name(k): (v.get("dtype"), v.get("shape")) for k, v in header.items()}
    if have != {k: (t, list(sh)) for k, (t, sh) in want.items()}:
        fail(
            f"table shard {path}: tensors {have} do not match a {dtype} table of {hi - lo} rows x {d_model}"
        )
    end = max((v["data_offsets"][1] for v in header.values()), default=0)
    if size != 8 + n + end:
        fail(
            f"table shard {path} is {size:,} bytes, its header needs {8 + n + end:,}: it is truncated or corrupt"
        )
