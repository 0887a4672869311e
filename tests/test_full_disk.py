"""Every stage on a disk that fills: one ``error:`` line, exit 2, and nothing half-written left.

The output goes to a real tmpfs of a few hundred KB mounted for the test (root only; skipped
elsewhere), the inputs stay on the ordinary disk. Before this was handled: ``prepare_data.py`` hung
forever (dolma's workers deadlock), ``tag_fgrams.py`` died of SIGBUS, the others printed ENOSPC
tracebacks, and ``evaluate.py --out`` failed only after the whole evaluation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cli_helpers import TINY_SCONE, assert_clean_error, single_rank_env, train_overrides

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A ``mount -t tmpfs`` of ``size`` bytes (call the fixture with the size); unmounted afterwards."""
    mounts = []

    def make(size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        d = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _fill(disk: Path) -> None:
    """Leave the filesystem with no free block."""
    try:
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


def _script(name: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    env = single_rank_env()
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _left(disk: Path) -> list:
    return sorted(p.name for p in disk.iterdir() if p.name != "filler")


def test_prepare_data(small_disk, real_corpus):
    disk = small_disk(400_000)
    files, _ = real_corpus
    proc = _script(
        "prepare_data.py", files[0], "--out", disk / "data", "--processes", "1", timeout=240
    )
    assert_clean_error(proc, r"no space left on device")
    assert _left(disk) == []


def test_build_fgrams(small_disk, art):
    disk = small_disk(64_000)
    proc = _script(
        "build_fgrams.py",
        "--tokens",
        art.tokens,
        "--num-fgrams",
        1000,
        "--processes",
        1,
        "--out",
        disk / "fgrams.safetensors",
    )
    assert_clean_error(proc, r"no space left on device")
    assert _left(disk) == []


def test_tag_fgrams(small_disk, art):
    disk = small_disk(256_000)
    proc = _script(
        "tag_fgrams.py", "--vocab", art.vocab, "--tokens", art.tokens, "--out", disk / "tags"
    )
    assert proc.returncode != -7, "SIGBUS"
    assert_clean_error(proc, r"no space left on device")
    assert _left(disk) == []


def test_export(small_disk, art):
    disk = small_disk(256_000)
    proc = _script("export_embeddings.py", art.run, "--out", disk / "served", "--dtype", "fp32")
    assert_clean_error(proc, r"no space left on device")
    # the finished shards stay in served.partial for resuming (each written whole, by rename)
    assert _left(disk) in ([], ["served.partial"])
    if _left(disk):
        assert all(not p.name.startswith(".") for p in (disk / "served.partial").iterdir())


def test_evaluate_out_is_checked_before_evaluating(small_disk, art):
    disk = small_disk(64_000)
    _fill(disk)
    proc = _script("evaluate.py", art.served, "--tokens", art.tokens, "--out", disk / "result.json")
    assert_clean_error(proc, r"no space left on device")
    assert "perplexity" not in proc.stdout  # refused before the evaluation, not after it
    assert _left(disk) == []


def test_train_save(small_disk, art):
    disk = small_disk(256_000)
    folder = disk / "run"
    proc = _script(
        "train.py", TINY_SCONE, *train_overrides(art.tokens, art.vocab, art.tags, folder)
    )
    assert_clean_error(
        proc, r"no space left on device saving checkpoint step2 .*'latest' still points at .*none"
    )
    assert not (folder / "latest").exists()
