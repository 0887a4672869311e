"""The exported table's shard format: quantization error bounds and checksums."""

from __future__ import annotations

import pytest
import torch

from olmo_scone.errors import SconeError
from olmo_scone.serving.table_format import DTYPES, dequantize, quantize, read_shard, write_shard


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_within_the_format_bound(dtype):
    torch.manual_seed(0)
    x = torch.randn(257, 64)
    y = dequantize(quantize(x, dtype), dtype).float()
    row_max = x.abs().amax(dim=1, keepdim=True)
    bound = {"fp32": 0.0, "bf16": 2**-8, "fp16": 2**-11, "int8": 0.5 / 127, "int4": 0.5 / 7}[dtype]
    assert ((y - x).abs() <= bound * row_max + 1e-7).all()


def test_shard_checksum_detects_corruption(tmp_path):
    x = torch.randn(50, 32)
    p = tmp_path / "table-00000.safetensors"
    write_shard(p, quantize(x, "int8"), "int8", 100, 150, 32)
    tensors, meta = read_shard(p)
    assert (meta["row_start"], meta["row_stop"], meta["dtype"]) == ("100", "150", "int8")
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside the tensor data
    p.write_bytes(bytes(raw))
    with pytest.raises(SconeError, match="does not match its checksum"):
        read_shard(p)
    p.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(SconeError, match="truncated or corrupt"):
        read_shard(p)
    with pytest.raises(SconeError, match="table shard missing"):
        read_shard(tmp_path / "nope.safetensors")
