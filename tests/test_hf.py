"""Served models through Hugging Face ``transformers``: ``AutoModelForCausalLM.from_pretrained`` on an
exported folder, against the project's own serving runtime on real text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from olmo_scone.config import SconeTrainConfig
from olmo_scone.export import export_model
from olmo_scone.serving.generate import generate
from olmo_scone.serving.runtime import ServedModel

REPO = Path(__file__).resolve().parents[1]
#: the project's own seeded sampling on this file's model and prompts, pinned before generation
#: moved anywhere near transformers (regenerate: OLMO_SCONE_PIN_SAMPLING=1 pytest tests/test_hf.py)
SAMPLING_PIN = Path(__file__).with_name("fixtures") / "hf_sampling.json"
SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.9)


@pytest.fixture(scope="module")
def exported(small_scone, tmp_path_factory):
    """conftest's small SCONE model exported with an fp32 table in several shards."""
    cfg, model, d, batch = small_scone
    out = tmp_path_factory.mktemp("hf") / "served"
    export_model(model, cfg, d / "config.yaml", out, dtype="fp32", shard_gb=0.0002, batch_size=512)
    return out, batch


@pytest.fixture(scope="module")
def hf_model(exported):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(exported[0]), trust_remote_code=True).eval()


def _prompts(batch):
    return [batch[0, :10].tolist(), batch[1, :10].tolist(), batch[2, :7].tolist()]


def test_from_pretrained_opens_the_folder_with_the_table_memory_mapped(hf_model, exported):
    out, _ = exported
    assert type(hf_model).__name__ == "SconeOLMoForCausalLM"
    assert hf_model.fgram_table.mode == "mmap" and hf_model.fgram_table.rows == 3000
    names = [n for n, _ in hf_model.named_parameters()]
    assert not any("fgram" in n for n in names)  # A_fgram is gone and the table is no parameter
    main = sum(p.numel() for p in hf_model.parameters())
    assert main == sum(p.numel() for p in ServedModel(out).model.parameters())
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) > 1


def test_forward_logits_equal_the_served_logits(hf_model, exported):
    out, batch = exported
    with torch.no_grad():
        got = hf_model(batch).logits
    want = ServedModel(out, mode="ram").logits(batch)
    assert (got.argmax(-1) != want.argmax(-1)).float().mean() < 1  # not a degenerate comparison
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_greedy_generate_equals_full_recompute_through_the_served_forward(hf_model, exported):
    out, batch = exported
    served = ServedModel(out)
    for prompt in _prompts(batch):
        with torch.no_grad():
            hf = hf_model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
        assert hf[0, len(prompt) :].tolist() == generate(served, [prompt], 12, use_cache=False)[0]


def test_seeded_sampling_gives_the_projects_pinned_tokens(hf_model, exported, prepared):
    out, batch = exported
    prompts = _prompts(batch)
    if os.environ.get("OLMO_SCONE_PIN_SAMPLING") == "1":
        pinned = {
            "data_fingerprint": prepared.data["fingerprint"],
            "settings": SAMPLING,
            "runs": [],
        }
        for seed in (0, 1, 2):
            for p in prompts:
                cont = generate(ServedModel(out), [p], 12, seed=seed, **SAMPLING)[0]
                pinned["runs"].append({"seed": seed, "prompt": p, "tokens": cont})
        SAMPLING_PIN.write_text(json.dumps(pinned, indent=1) + "\n")
    pinned = json.loads(SAMPLING_PIN.read_text())
    assert pinned["data_fingerprint"] == prepared.data["fingerprint"], (
        "the pinned sampling fixture was made on other test data (../shared/data): regenerate it"
    )
    for run in pinned["runs"]:
        torch.manual_seed(run["seed"])  # generate() draws from torch's default generator
        with torch.no_grad():
            hf = hf_model.generate(
                torch.tensor([run["prompt"]]), max_new_tokens=12, do_sample=True, **SAMPLING
            )
        assert hf[0, len(run["prompt"]) :].tolist() == run["tokens"], run
    assert len({tuple(r["tokens"]) for r in pinned["runs"]}) > 3  # the seeds do change the samples


def test_the_tokenizer_loads_with_autotokenizer(exported):
    from olmo.tokenizer import Tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(exported[0]))
    olmo = Tokenizer.from_file(
        str(exported[0] / "tokenizer.json"), eos_token_id=50279, pad_token_id=1
    )
    text = "We the People of the United States, in Order to form a more perfect Union"
    assert tok(text).input_ids == olmo.encode(text, add_special_tokens=False)
    assert (tok.eos_token_id, tok.pad_token_id) == (50279, 1)


def test_a_baseline_save_folder_converts_to_a_folder_that_loads_the_same_way(
    prepared, baseline_run, tmp_path
):
    from transformers import AutoModelForCausalLM

    from olmo_scone.train.checkpoint import load_trained_model

    base = baseline_run
    out = tmp_path / "hf-baseline"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "export_embeddings.py"),
            str(base),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "is a baseline" in proc.stdout, proc.stderr[-2000:]
    hf = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()
    assert hf.fgram_table is None
    _, plain = load_trained_model(base)
    ids = torch.from_numpy(
        np.asarray(prepared.memmaps("valid")[0][: 2 * 128], dtype=np.int64).reshape(2, 128)
    )
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, plain(ids).logits, rtol=1e-5, atol=1e-5)


def test_exporting_after_transformers_loaded_the_class_still_writes_the_folder(
    hf_model, exported, tmp_path
):
    """Loading as remote code marks the class for transformers' auto classes; a later export in the
    same process must still write our two code files and auto_map (save_pretrained would copy the
    package's source file instead, and fail on its package-relative imports)."""
    from olmo_scone.config import load_config
    from olmo_scone.hf.folder import CODE_FILES, write_hf_files

    assert hf_model is not None  # loaded first: the order this test is about
    out, _ = exported
    write_hf_files(tmp_path, load_config(SconeTrainConfig, out / "config.yaml"), has_table=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_olmo_scone.SconeOLMoForCausalLM"
    assert sorted(p.name for p in tmp_path.glob("*.py")) == sorted(CODE_FILES)
    hf_model.save_pretrained(
        tmp_path / "resaved"
    )  # a user's own save of the loaded model works too
    assert (tmp_path / "resaved" / "config.json").is_file()


def test_the_readme_flow_tokenizer_into_generate(hf_model, exported):
    """README's snippet: the tokenizer's output (input_ids and attention_mask) straight into generate()."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(exported[0]))
    inputs = tok("We the People of the United States", return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask"}
    torch.manual_seed(0)
    out = hf_model.generate(**inputs, max_new_tokens=8, do_sample=True, top_k=40)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 8)
    greedy = hf_model.generate(**inputs, max_new_tokens=8, do_sample=False)
    served = generate(
        ServedModel(exported[0]), [inputs["input_ids"][0].tolist()], 8, use_cache=False
    )[0]
    assert greedy[0, inputs["input_ids"].shape[1] :].tolist() == served
