"""A tokenizer of one's own, end to end and at its edges: train a byte-level BPE on real text,
then prepare -> count -> tag -> 2-rank training -> export -> evaluate and generate through the
serving runtime (with the tokenizer's original path gone, as on another machine) -> AutoTokenizer
and AutoModelForCausalLM; and one error line for each bad tokenizer input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import TINY_SCONE, assert_clean_error, single_rank_env

from olmo_scone.atomic import sha256_file
from olmo_scone.launch import torchrun_command

REPO = Path(__file__).resolve().parents[1]
VOCAB = 1024


def _script(name: str, *args, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env or single_rank_env(),
        timeout=timeout,
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def own_tokenizer(real_corpus, tmp_path_factory) -> Path:
    files, max_docs = real_corpus
    out = tmp_path_factory.mktemp("tok") / "bpe.json"
    extra = ["--max-documents", max_docs] if max_docs else []
    out_text = _ok(
        _script(
            "train_tokenizer.py",
            *files,
            "--out",
            out,
            "--vocab-size",
            VOCAB,
            "--valid-fraction",
            "0.1",
            *extra,
        )
    )
    assert f"{VOCAB:,} ids, EOS 0, PAD 1, sha256 {sha256_file(out)}" in out_text
    return out


def test_the_bpe_round_trips_real_text_and_was_trained_on_the_train_split_only(
    own_tokenizer, real_corpus
):
    from tokenizers import Tokenizer

    from olmo_scone.data.documents import iter_documents, resolve_sources

    tok = Tokenizer.from_file(str(own_tokenizer))
    assert tok.get_vocab_size() == VOCAB
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|padding|>") == 1
    texts = [d.text for _, d in zip(range(20), iter_documents(resolve_sources(real_corpus[0])))]
    for text in texts:
        ids = tok.encode(text).ids
        assert tok.decode(ids) == text  # byte-level: every text round-trips
        assert max(ids) < VOCAB
    # merges learnt from English: far fewer tokens than bytes
    n_bytes = sum(len(t.encode()) for t in texts)
    n_tokens = sum(len(tok.encode(t).ids) for t in texts)
    assert n_tokens < 0.5 * n_bytes


@pytest.mark.e2e
def test_a_tokenizer_of_ones_own_end_to_end(own_tokenizer, real_corpus, tmp_path):
    files, max_docs = real_corpus
    d = tmp_path
    extra = ["--max-documents", max_docs] if max_docs else []
    _ok(
        _script(
            "prepare_data.py",
            *files,
            "--tokenizer",
            own_tokenizer,
            "--valid-fraction",
            "0.1",
            "--processes",
            2,
            "--out",
            d / "data",
            *extra,
        )
    )
    manifest = json.loads((d / "data" / "manifest.json").read_text())
    assert (
        manifest["tokenizer"]["sha256"] == sha256_file(own_tokenizer)
        and manifest["dtype"] == "uint16"
    )
    _ok(
        _script(
            "build_fgrams.py",
            "--tokens",
            d / "data",
            "--num-fgrams",
            3000,
            "--processes",
            2,
            "--out",
            d / "fgrams.safetensors",
        )
    )
    _ok(
        _script(
            "tag_fgrams.py",
            "--vocab",
            d / "fgrams.safetensors",
            "--tokens",
            d / "data",
            "--out",
            d / "tags",
        )
    )
    run = d / "run"
    train = subprocess.run(
        [
            *torchrun_command(2),
            str(REPO / "scripts" / "train.py"),
            TINY_SCONE,
            f"tokenizer.identifier={own_tokenizer}",
            f"model.vocab_size={VOCAB}",
            f"model.embedding_size={VOCAB}",
            "model.eos_token_id=0",
            "model.pad_token_id=1",
            f"data.tokens_dir={d / 'data'}",
            f"data.fgram_tags={d / 'tags'}",
            f"model.fgram.vocab_path={d / 'fgrams.safetensors'}",
            f"save_folder={run}",
            "max_duration=4",
            "global_train_batch_size=8",
            "device_train_microbatch_size=4",
            "model.max_sequence_length=64",
            "scheduler.t_warmup=1",
            "wandb=null",
            "evaluators=[]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    _ok(train)
    served = d / "served"
    _ok(_script("export_embeddings.py", run, "--out", served, "--dtype", "fp32"))
    # the folder carries the tokenizer's own bytes: served where the original path does not exist
    assert sha256_file(served / "tokenizer.json") == sha256_file(own_tokenizer)
    moved = own_tokenizer.with_name("moved.json")
    own_tokenizer.rename(moved)
    try:
        text = REPO / "README.md"
        result = json.loads(
            _ok(_script("evaluate.py", served, "--text", text, "--json")).strip().splitlines()[-1]
        )
        assert 1 < result["perplexity"] < 2 * VOCAB
        held_out = json.loads(
            _ok(_script("evaluate.py", served, "--tokens", d / "data", "--json"))
            .strip()
            .splitlines()[-1]
        )
        assert 1 < held_out["perplexity"] < 2 * VOCAB
        gen = _ok(_script("generate.py", served, "--prompt", "The nation", "--max-new-tokens", 8))
        assert "The nation" in gen

        from tokenizers import Tokenizer
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from olmo_scone.serving.runtime import ServedModel

        hf_tok = AutoTokenizer.from_pretrained(str(served))
        ref = Tokenizer.from_file(str(moved))
        sample = text.read_text()[:3000]
        assert hf_tok(sample, add_special_tokens=False)["input_ids"] == ref.encode(sample).ids
        model = AutoModelForCausalLM.from_pretrained(str(served), trust_remote_code=True).eval()
        ids = hf_tok("The nation was", return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=6, do_sample=False)
        assert out.shape[1] == ids.shape[1] + 6 and int(out.max()) < VOCAB
        import torch

        runtime = ServedModel(served, mode="mmap")
        with torch.no_grad():
            want = runtime.logits(ids)[0]
            got = model(ids).logits[0]
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, rtol=1e-4)
    finally:
        moved.rename(own_tokenizer)


def test_bad_tokenizer_inputs_are_one_line_each(own_tokenizer, real_corpus, tmp_path, prepared):
    files, _ = real_corpus
    not_a_tokenizer = tmp_path / "notes.json"
    not_a_tokenizer.write_text('{"hello": "world"}')
    assert_clean_error(
        _script(
            "prepare_data.py", files[0], "--tokenizer", not_a_tokenizer, "--out", tmp_path / "a"
        ),
        r"notes\.json is not a Hugging Face tokenizer file",
    )
    no_eos = tmp_path / "no-eos.json"
    spec = json.loads(own_tokenizer.read_text())
    for t in spec["added_tokens"]:
        t["content"] = t["content"].replace("endoftext", "something")
    no_eos.write_text(json.dumps(spec))
    assert_clean_error(
        _script("prepare_data.py", files[0], "--tokenizer", no_eos, "--out", tmp_path / "b"),
        r"no-eos\.json has no EOS token: none of its special tokens is one of <\|endoftext\|>",
    )
    assert_clean_error(
        _script(
            "train_tokenizer.py", files[0], "--out", tmp_path / "small.json", "--vocab-size", 100
        ),
        r"--vocab-size 100 is below the byte alphabet: a byte-level BPE needs at least 258 ids",
    )
    assert_clean_error(
        _script(
            "build_fgrams.py",
            "--tokens",
            str(prepared.root / "train" / "*.npy"),
            "--tokenizer",
            tmp_path / "missing.json",
            "--num-fgrams",
            10,
            "--out",
            tmp_path / "v.safetensors",
        ),
        r"tokenizer file not found: .*missing\.json",
    )
    # training data made with the OLMo tokenizer, a config naming another one
    proc = _script(
        "train.py",
        TINY_SCONE,
        f"tokenizer.identifier={own_tokenizer}",
        f"data.tokens_dir={prepared.root}",
        "model.fgram.vocab_path=null",
        f"save_folder={tmp_path / 'run'}",
        "wandb=null",
        "evaluators=[]",
    )
    assert_clean_error(
        proc,
        r"tokenizer\.identifier .*bpe\.json \(sha256 \w+\) is not the tokenizer the training data was made with",
    )
    assert not (tmp_path / "run").exists()
