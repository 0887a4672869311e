"""build_fgrams.py / tag_fgrams.py end to end on real text, and their bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_clean_error

from olmo_scone.fgrams.reference import longest_matches
from olmo_scone.fgrams.vocab import load_vocab

REPO = Path(__file__).resolve().parents[1]
BUILD_INFO: dict = {}  # what the `built` fixture read off build_fgrams.py's output


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def built(prepared, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    vocab = d / "vocab.safetensors"
    proc = run(
        "build_fgrams.py",
        "--tokens",
        prepared.root,
        "--num-fgrams",
        20000,
        "--processes",
        2,
        "--out",
        vocab,
    )
    assert proc.returncode == 0, proc.stderr
    assert "f-grams" in proc.stdout and "tokens/s" in proc.stdout
    import re

    BUILD_INFO["frequent"] = int(
        re.search(r"asked 20,000; ([\d,]+) n-grams", proc.stdout).group(1).replace(",", "")
    )
    return prepared, vocab, d


def test_vocab_file_metadata(built):
    prepared, vocab_path, _ = built
    v = load_vocab(vocab_path, tokenizer_sha256=prepared.tokenizer["sha256"])
    md = v.metadata
    assert md["max_n"] == "5" and md["min_count"] == "5" and md["num_fgrams"] == "20000"
    assert md["corpus_tokens"] == str(prepared.num_tokens("train"))
    assert md["corpus_fingerprint"] == prepared.data["fingerprint"]
    assert md["tokenizer_sha256"] == prepared.tokenizer["sha256"] and md["vocab_size"] == "50280"
    assert "build_wall_time_s" not in md and len(v) == min(20000, BUILD_INFO["frequent"]) == int(
        md["size"]
    )
    assert np.all(np.diff(v.counts) <= 0)  # rank order


def test_tagging_sidecar_is_aligned_and_exact(built):
    prepared, vocab_path, d = built
    out = d / "tags"
    proc = run("tag_fgrams.py", "--vocab", vocab_path, "--tokens", prepared.root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "fgram_tags.json").read_text())
    v = load_vocab(vocab_path)
    assert (
        meta["vocab_sha256"] == v.sha256
        and meta["tokens_fingerprint"] == prepared.data["fingerprint"]
    )
    fgrams = [tuple(int(x) for x in r[:n]) for r, n in zip(v.tokens, v.lengths)]
    for entry in meta["files"]:
        tokens = np.fromfile(prepared.root / entry["tokens"], dtype=prepared.dtype)
        rows = np.fromfile(out / entry["path"], dtype=np.int32)
        assert len(rows) == len(tokens) == entry["positions"]
        head = 20_000
        assert rows[:head].tolist() == [r for r, _ in longest_matches(tokens[:head], fgrams, 5)]
    proc = run("tag_fgrams.py", "--vocab", vocab_path, "--tokens", prepared.root, "--out", out)
    assert_clean_error(proc, r"is not empty; pass --overwrite")


def test_bad_inputs(built, tmp_path):
    prepared, vocab_path, _ = built
    tok = prepared.root
    assert_clean_error(
        run(
            "build_fgrams.py",
            "--tokens",
            tok,
            "--max-n",
            1,
            "--num-fgrams",
            10,
            "--out",
            tmp_path / "v",
        ),
        r"--max-n must be >= 2",
    )
    assert_clean_error(
        run("build_fgrams.py", "--tokens", tok, "--num-fgrams", 0, "--out", tmp_path / "v"),
        r"--num-fgrams: must be a positive integer, got 0",
    )
    assert_clean_error(
        run(
            "build_fgrams.py",
            "--tokens",
            tmp_path / "missing",
            "--num-fgrams",
            5,
            "--out",
            tmp_path / "v",
        ),
        r"no token files at",
    )
    (tmp_path / "empty.npy").write_bytes(b"")
    assert_clean_error(
        run(
            "build_fgrams.py",
            "--tokens",
            tmp_path / "empty.npy",
            "--tokenizer",
            "allenai_gpt-neox-olmo-dolma-v1_5",
            "--num-fgrams",
            5,
            "--out",
            tmp_path / "v",
        ),
        r"empty",
    )
    assert_clean_error(
        run(
            "build_fgrams.py",
            "--tokens",
            tmp_path / "empty.npy",
            "--num-fgrams",
            5,
            "--out",
            tmp_path / "v",
        ),
        r"need --tokenizer",
    )
    assert not (tmp_path / "v").exists()
    # a vocabulary from another tokenizer: same ids, but the dolma2 tokenizer's hash
    from olmo_scone.data.tokenizers import resolve_tokenizer
    from olmo_scone.fgrams.vocab import save_vocab

    v = load_vocab(vocab_path)
    other = tmp_path / "other.safetensors"
    save_vocab(
        other,
        v.tokens,
        v.lengths,
        v.counts,
        {
            **v.metadata,
            "tokenizer_name": "allenai_dolma2",
            "tokenizer_sha256": resolve_tokenizer("allenai_dolma2").sha256,
        },
    )
    assert_clean_error(
        run("tag_fgrams.py", "--vocab", other, "--tokens", tok, "--out", tmp_path / "t"),
        r"built with tokenizer allenai_dolma2 .* but the token files use",
    )
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(vocab_path.read_bytes()[:1000])
    assert_clean_error(
        run("tag_fgrams.py", "--vocab", broken, "--tokens", tok, "--out", tmp_path / "t"),
        r"not a readable safetensors|corrupt",
    )
    assert_clean_error(
        run("build_fgrams.py", "--tokens", tok, "--num-fgrams", 5, "--out", vocab_path),
        r"exists; pass --overwrite",
    )


def test_asking_for_more_fgrams_than_the_corpus_has_warns(built, tmp_path):
    prepared, _, _ = built
    out = tmp_path / "all.safetensors"
    proc = run(
        "build_fgrams.py",
        "--tokens",
        prepared.root,
        "--num-fgrams",
        10**8,
        "--processes",
        2,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(load_vocab(out)) == BUILD_INFO["frequent"] < 10**8
    assert (
        f"warning: only {BUILD_INFO['frequent']:,} n-grams occur 5 times or more, fewer than the 100,000,000"
        in proc.stderr
    )


def test_the_same_corpus_gives_the_same_vocabulary_file(prepared, tmp_path):
    """Byte for byte, across processes (the safetensors library's own writer orders metadata keys
    differently in every process, and a wall time was recorded)."""
    outs = []
    for i in range(2):
        out = tmp_path / f"v{i}.safetensors"
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "build_fgrams.py"),
                "--tokens",
                str(prepared.root),
                "--num-fgrams",
                "3000",
                "--processes",
                "1",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
