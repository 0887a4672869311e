"""Export across ranks: ``torchrun --nproc_per_node=2 scripts/export_embeddings.py`` (gloo on CPU)
writes the same artifact as one process, byte for byte: shard layout, row order and A_fgram batch
boundaries do not depend on the number of ranks. Both run with one thread per process, as torchrun
sets, so the arithmetic is the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmo_scone.launch import torchrun_command

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# what may differ between the two manifests (the seal covers them)
PROVENANCE = {"export_ranks", "export_wall_time_s", "record_sha256"}


def _export(ranks: int, run: Path, out: Path) -> subprocess.CompletedProcess:
    args = [
        str(REPO / "scripts" / "export_embeddings.py"),
        str(run),
        "--out",
        str(out),
        "--dtype",
        "fp32",
        "--shard-gb",
        "0.0003",
        "--batch-size",
        "700",
    ]
    if ranks > 1:
        cmd = [*torchrun_command(ranks), *args]
    else:
        cmd = [sys.executable, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


@pytest.mark.e2e
def test_two_rank_export_is_byte_identical_to_one_rank(art, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for n, out in ((1, one), (2, two)):
        proc = _export(n, art.run, out)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert f"on {n} rank(s)" in proc.stdout
        # rank 0's bar counts rows, and ends whole, with no terminal (captured output)
        assert "table rows" in proc.stderr and "100%" in proc.stderr
    files = sorted(str(p.relative_to(one)) for p in one.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(two)) for p in two.rglob("*") if p.is_file())
    assert "matcher/index-keys.npy" in files
    shards = [f for f in files if f.startswith("table-")]
    assert len(shards) >= 4  # both ranks wrote some (shard i goes to rank i mod 2)
    for name in files:
        if name != "manifest.json":
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert {k: v for k, v in m1.items() if k not in PROVENANCE} == {
        k: v for k, v in m2.items() if k not in PROVENANCE
    }
    assert (m1["export_ranks"], m2["export_ranks"]) == (1, 2)
    assert not (tmp_path / "two.partial").exists() and not (tmp_path / ".two.lock").exists()
