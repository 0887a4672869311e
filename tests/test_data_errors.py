"""Bad input to scripts/prepare_data.py: one clear line on stderr, exit 2, nothing written."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_clean_error

REPO = Path(__file__).resolve().parents[1]


def run_prepare(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_data.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def test_missing_path(tmp_path, out):
    proc = run_prepare(str(tmp_path / "nope.jsonl"), "--out", str(out))
    assert_clean_error(proc, r"input path does not exist: .*nope\.jsonl")
    assert not out.exists()


def test_output_under_a_file(tmp_path):
    """--out below a regular file: the output lock cannot be created; one line, the file untouched."""
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 20)
    proc = run_prepare(str(text), "--out", str(blocker / "out"))
    assert_clean_error(proc, r"cannot write --out .*a-file/out: .*a-file")
    assert blocker.read_text() == "keep me"


def test_empty_corpus(tmp_path, out):
    f = tmp_path / "empty.jsonl"
    f.write_text(
        json.dumps({"id": "a", "text": "   "}) + "\n" + json.dumps({"id": "b", "text": ""}) + "\n"
    )
    assert_clean_error(run_prepare(str(f), "--out", str(out)), r"empty corpus")
    (tmp_path / "nothing.txt").write_text("")
    assert_clean_error(
        run_prepare(str(tmp_path / "nothing.txt"), "--out", str(out)), r"empty corpus"
    )
    assert not out.exists()


def test_not_utf8(tmp_path, out):
    f = tmp_path / "latin1.jsonl.gz"
    with gzip.open(f, "wb") as g:
        g.write(json.dumps({"id": "1", "text": "fine"}).encode() + b"\n")
        g.write(b'{"id": "2", "text": "caf\xe9"}\n')
    assert_clean_error(
        run_prepare(str(f), "--out", str(out)), r"latin1\.jsonl\.gz: line 2 is not valid UTF-8"
    )
    t = tmp_path / "latin1.txt"
    t.write_bytes("na\u00efve text".encode("latin-1"))
    assert_clean_error(
        run_prepare(str(t), "--out", str(out)), r"latin1\.txt: the file is not valid UTF-8"
    )
    assert not out.exists()


def test_json_line_without_text(tmp_path, out):
    f = tmp_path / "docs.jsonl"
    f.write_text(
        json.dumps({"id": "1", "text": "ok"})
        + "\n"
        + json.dumps({"id": "2", "body": "no text"})
        + "\n"
    )
    assert_clean_error(
        run_prepare(str(f), "--out", str(out)), r"docs\.jsonl: line 2 has no 'text' field"
    )
    f.write_text('{"id": "1", "text": "ok"}\n{not json}\n')
    assert_clean_error(run_prepare(str(f), "--out", str(out)), r"line 2 is not valid JSON")


def test_corrupt_compressed_file(tmp_path, out):
    f = tmp_path / "broken.jsonl.gz"
    data = gzip.compress(
        ("\n".join(json.dumps({"id": str(i), "text": "x " * 50}) for i in range(200))).encode()
    )
    f.write_bytes(data[: len(data) // 2])
    assert_clean_error(run_prepare(str(f), "--out", str(out)), r"broken\.jsonl\.gz: cannot read")


def test_unknown_tokenizer(tmp_path, out):
    f = tmp_path / "docs.jsonl"
    f.write_text(json.dumps({"id": "1", "text": "hello"}) + "\n")
    assert_clean_error(
        run_prepare(str(f), "--out", str(out), "--tokenizer", "gpt5"),
        r"unknown tokenizer 'gpt5'; choose one of: allenai_dolma2",
    )


def test_output_holding_other_files_is_refused(tmp_path, out):
    f = tmp_path / "docs.jsonl"
    f.write_text(
        "\n".join(json.dumps({"id": str(i), "text": f"doc {i}"}) for i in range(10)) + "\n"
    )
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_clean_error(
        run_prepare(str(f), "--out", str(out)), r"already holds other files; pass --overwrite"
    )
    assert (out / "precious.txt").read_text() == "keep me"


def test_dolma_sample_offline_fails_at_once(out):
    proc = run_prepare(
        "--remote", "dolma-v1_6-sample", "--out", str(out), env={"OLMO_SCONE_OFFLINE": "1"}
    )
    assert_clean_error(
        proc,
        r"needs the network to fetch https://olmo-data\.org/.*offline \(OLMO_SCONE_OFFLINE is set\).*local paths",
    )
    assert not out.exists()


def test_zstd_and_directory_inputs(tmp_path, out):
    """Not an error case: .jsonl.zst files found by directory recursion are read like .jsonl.gz."""
    import zstandard

    from olmo_scone.data.documents import iter_documents, resolve_sources

    d = tmp_path / "corpus" / "nested"
    d.mkdir(parents=True)
    docs = [{"id": str(i), "text": f"Document {i}: caf\u00e9 \u2013 na\u00efve"} for i in range(5)]
    (d / "a.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("\n".join(map(json.dumps, docs)).encode())
    )
    (d / "ignored.csv").write_text("x")
    files = resolve_sources([str(tmp_path / "corpus")])
    assert [f.name for f in files] == ["a.jsonl.zst"]
    assert [d.text for d in iter_documents(files)] == [x["text"] for x in docs]


def test_artifacts_are_readable_by_the_team(tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (0600/0700); what lands must have the modes a plain
    open/mkdir would give under the umask, or a shared artifact is unreadable to colleagues."""
    import os

    from olmo_scone.atomic import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_directory(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
