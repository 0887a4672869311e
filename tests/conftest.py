"""Shared fixtures: real text for tests (../shared/data when present, else the embedded corpus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from cli_helpers import TINY_SCONE, single_rank_env, train_overrides

from olmo_scone.launch import torchrun_command

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OLMO_SCONE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path | None:
    p = SHARED_DATA.joinpath(*parts)
    return p if p.is_file() else None


@pytest.fixture(scope="session")
def real_corpus() -> tuple[list[str], int | None]:
    """(input files, max_documents): a small real-English corpus.

    Uses the inaugural addresses and State of the Union corpora from ../shared/data when
    present (124 documents, ~0.6M tokens), else the first 3000 documents of the embedded
    default corpus, so the suite also runs on a machine without ../shared.
    """
    files = [
        shared_file("english-mix", "inaugural.jsonl.gz"),
        shared_file("english-mix", "state_union.jsonl.gz"),
    ]
    if all(files):
        return [str(f) for f in files], None
    from olmo_scone.data.embedded import embedded_corpus_path

    return [str(embedded_corpus_path())], 3000


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, real_corpus):
    """A token directory prepared once per session from :func:`real_corpus`."""
    from olmo_scone.data.prepare import PrepareSettings, prepare

    files, max_docs = real_corpus
    out = tmp_path_factory.mktemp("prepared") / "tokens"
    return prepare(
        PrepareSettings(
            sources=files, out=out, valid_fraction=0.1, seed=0, processes=2, max_documents=max_docs
        )
    )


@pytest.fixture(scope="session")
def wikitext_valid() -> Path:
    """WikiText-103 validation text from ../shared/data (skips the test when absent)."""
    p = shared_file("wikitext", "wiki.valid.tokens")
    if p is None:
        pytest.skip("../shared/data/wikitext not present")
    return p


class TaggedVocab(NamedTuple):
    root: Path  # holds fgrams.safetensors and tags/
    vocab: Path
    tags: Path


@pytest.fixture(scope="session")
def tagged_vocab(prepared, tmp_path_factory) -> TaggedVocab:
    """The 5K most frequent f-grams of the session's real train split, and that split tagged with
    them (the sidecar a SCONE training run reads). Shared read-only: tests copy before changing."""
    from olmo_scone.data.sources import open_token_files
    from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
    from olmo_scone.fgrams.tagging import tag_token_files
    from olmo_scone.fgrams.vocab import load_vocab, save_vocab

    d = tmp_path_factory.mktemp("tagged-vocab")
    files = open_token_files(str(prepared.root), "train")
    r = count_fgrams(
        [TokenSource(f.path, f.dtype, f.length) for f in files.files],
        50280,
        50279,
        1,
        CountSettings(num_fgrams=5000, processes=1),
    )
    vocab = d / "fgrams.safetensors"
    save_vocab(
        vocab, r.tokens, r.lengths, r.counts, {"tokenizer_sha256": prepared.tokenizer["sha256"]}
    )
    tag_token_files(files, load_vocab(vocab), vocab, d / "tags")
    return TaggedVocab(d, vocab, d / "tags")


class Art(NamedTuple):
    root: Path
    tokens: Path
    vocab: Path
    tags: Path
    run: Path
    served: Path
    bare_uint32: Path


@pytest.fixture(scope="session")
def art(prepared, tagged_vocab, tmp_path_factory) -> Art:
    """Small real artifacts for CLI tests: the session's token files, a 5K-f-gram vocabulary and its
    tags, a 2-step SCONE checkpoint written by the real trainer (one process), its fp32 served
    artifact in several shards, and a bare uint32 token file of another tokenizer (dolma2) on real text."""
    from olmo_scone.export import export

    d = tmp_path_factory.mktemp("art")
    vocab, tags = tagged_vocab.vocab, tagged_vocab.tags
    run = d / "run"
    env = single_rank_env()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            TINY_SCONE,
            *train_overrides(prepared.root, vocab, tags, run),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    served = d / "served"
    export(run, served, dtype="fp32", shard_gb=0.0005, batch_size=1024)
    assert len(json.loads((served / "manifest.json").read_text())["shards"]) > 1
    # uint32 token ids of another (larger) tokenizer, on real text: read as uint16 they are nonsense
    from tokenizers import Tokenizer

    from olmo_scone.data.tokenizers import resolve_tokenizer

    big = Tokenizer.from_file(str(resolve_tokenizer("allenai_dolma2").path))
    ids = np.asarray(big.encode((REPO / "README.md").read_text() * 3).ids, dtype=np.uint32)
    bare = d / "dolma2-tokens.npy"
    bare.write_bytes(ids.tobytes())
    return Art(d, prepared.root, vocab, tags, run, served, bare)


class SmallScone(NamedTuple):
    cfg: object
    model: object  # SconeOLMo, random init (seed 0), eval mode
    folder: Path  # its config.yaml and vocabulary
    batch: object  # [8, 64] real train tokens


@pytest.fixture(scope="session")
def small_scone(prepared, tmp_path_factory) -> SmallScone:
    """A small SCONE model (d 64, 2 + 2 layers, context 64; random init, seed 0) with 3,000 f-grams
    counted on the first 200K real train tokens: what the serving and Hugging Face tests export."""
    import torch

    from olmo_scone.config import FgramConfig, SconeModelConfig, SconeTrainConfig
    from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
    from olmo_scone.fgrams.vocab import load_vocab, save_vocab
    from olmo_scone.model import SconeOLMo

    d = tmp_path_factory.mktemp("small-scone")
    tokens = np.concatenate([np.asarray(m) for m in prepared.memmaps("train")])[:200_000]
    (d / "t.npy").write_bytes(tokens.tobytes())
    r = count_fgrams(
        [TokenSource(d / "t.npy", tokens.dtype, len(tokens))],
        50280,
        50279,
        1,
        CountSettings(num_fgrams=3000, min_count=3, processes=1),
    )
    vpath = d / "fgrams.safetensors"
    save_vocab(
        vpath, r.tokens, r.lengths, r.counts, {"tokenizer_sha256": prepared.tokenizer["sha256"]}
    )
    cfg = SconeTrainConfig.new()
    cfg.tokenizer.identifier = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
    cfg.model = SconeModelConfig(
        d_model=64,
        n_heads=4,
        n_layers=2,
        max_sequence_length=64,
        vocab_size=50280,
        embedding_size=50304,
        eos_token_id=50279,
        pad_token_id=1,
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        init_device="cpu",
        fgram=FgramConfig(vocab_path=str(vpath), n_layers=2),
    )
    cfg.save(d / "config.yaml")
    torch.manual_seed(0)
    model = SconeOLMo(cfg.model, fgram_vocab=load_vocab(vpath)).eval()
    batch = torch.from_numpy(tokens[: 8 * 64].astype(np.int64).reshape(8, 64))
    return SmallScone(cfg, model, d, batch)


class Gpt2Scone(NamedTuple):
    cfg: object
    model: object  # SconeOLMo, random init (seed 0, std 0.3), eval mode
    export: Path  # its fp32 serving artifact, with vllm/


@pytest.fixture(scope="session")
def gpt2_scone(small_scone, tmp_path_factory) -> Gpt2Scone:
    """:func:`small_scone` with the main model GPT-2 can hold (the shipped configs' architecture:
    learned positions, GELU, biases, tied embeddings) at a head size vLLM's CPU attention supports
    (64), randomly initialised wide enough (std 0.3) that greedy decoding does not repeat one token,
    ``A_fgram`` 1 layer; exported in fp32 (several shards): the vLLM tests' model."""
    import dataclasses

    import torch

    from olmo_scone.export import export_model
    from olmo_scone.fgrams.vocab import load_vocab
    from olmo_scone.model import SconeOLMo

    base = small_scone.cfg
    gpt2_like = dict(
        d_model=128,
        n_heads=2,
        max_sequence_length=128,
        mlp_ratio=4,
        activation_type="gelu",
        block_type="sequential",
        rope=False,
        include_bias=True,
        layer_norm_type="default",
        layer_norm_with_affine=True,
        weight_tying=True,
        init_std=0.3,
        fgram=dataclasses.replace(base.model.fgram, n_layers=1),
    )
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, **gpt2_like))
    d = tmp_path_factory.mktemp("gpt2-scone")
    cfg.save(d / "config.yaml")
    torch.manual_seed(0)
    model = SconeOLMo(cfg.model, fgram_vocab=load_vocab(cfg.model.fgram.vocab_path)).eval()
    export_model(model, cfg, d / "config.yaml", d / "scone", dtype="fp32", shard_gb=0.005)
    return Gpt2Scone(cfg, model, d / "scone")


@pytest.fixture(scope="session")
def baseline_run(prepared, tmp_path_factory) -> Path:
    """A baseline save_folder: tiny-baseline.yaml trained for 2 steps by the real trainer (torchrun, one
    rank), shared by the serving and the Hugging Face tests."""
    base = tmp_path_factory.mktemp("baseline-run") / "baseline"
    proc = subprocess.run(
        [
            *torchrun_command(1),
            str(REPO / "scripts" / "train.py"),
            str(REPO / "configs" / "olmo" / "tiny-baseline.yaml"),
            f"data.tokens_dir={prepared.root}",
            f"save_folder={base}",
            "max_duration=2",
            "wandb=null",
            "evaluators=[]",
            "global_train_batch_size=4",
            "device_train_microbatch_size=4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return base
