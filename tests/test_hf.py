"""Served models through Hugging Face ``transformers``: ``AutoModelForCausalLM.from_pretrained`` on an
exported folder, against the project's own serving runtime on real text."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.fixture(scope="module")
def hf_baseline(small_scone, tmp_path_factory):
    """conftest's small model's main model exported as a baseline folder (no table), loaded."""
    from transformers import AutoModelForCausalLM

    from olmo_scone.export import export_baseline

    cfg, model, d, _ = small_scone
    out = tmp_path_factory.mktemp("hf-base") / "served"
    export_baseline(model, cfg, out)
    return AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()


def _left_padded(prompts, pad_id=1):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("which", ["scone", "baseline"])
def test_left_padded_batched_generate_equals_one_prompt_at_a_time(
    which, hf_model, hf_baseline, exported
):
    """Learned absolute positions: without position ids from the attention mask, left padding
    shifted every real token of the shorter prompts (KL 0.76 at the first new token)."""
    model = hf_model if which == "scone" else hf_baseline
    batch = exported[1]
    prompts = [batch[0, :20].tolist(), batch[3, :5].tolist(), batch[5, :12].tolist()]
    ids, mask = _left_padded(prompts)
    with torch.no_grad():
        together = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=1
        )
        first = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask)).logits
        for i, p in enumerate(prompts):
            alone = model.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False)
            assert together[i, ids.shape[1] :].tolist() == alone[0, len(p) :].tolist(), i
            # the logits of the real tokens, not only the argmax
            own = model(torch.tensor([p])).logits[0]
            torch.testing.assert_close(first[i, -len(p) :], own, rtol=1e-4, atol=1e-4)


def _positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def test_beam_search_runs_and_its_best_beam_is_a_likely_continuation(hf_model, exported):
    prompt = torch.tensor([exported[1][0, :10].tolist()])
    with torch.no_grad():
        beams = hf_model.generate(
            prompt,
            max_new_tokens=6,
            num_beams=3,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        greedy = hf_model.generate(prompt, max_new_tokens=6, do_sample=False)

    def logprob(seq):
        with torch.no_grad():
            lp = torch.log_softmax(hf_model(seq).logits[0, :-1], -1)
        return lp[torch.arange(9, 15), seq[0, 10:]].sum().item()

    # beam search keeps a continuation at least as likely as the greedy one, scored by the forward
    assert logprob(beams.sequences[:1]) >= logprob(greedy) - 1e-4


def test_generating_past_the_context_is_one_clear_error(hf_model, exported):
    prompt = torch.tensor([exported[1][0, :60].tolist()])
    with pytest.raises(ValueError, match="exceed this model's context of 64"):
        hf_model.generate(prompt, max_new_tokens=10, do_sample=False)


def test_save_pretrained_round_trips_to_the_same_model_and_the_runtime_opens_it(
    hf_model, exported, tmp_path
):
    from transformers import AutoModelForCausalLM

    out, batch = exported
    with torch.no_grad():
        want = hf_model(batch[:2]).logits
    hf_model.save_pretrained(tmp_path / "saved")
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"), trust_remote_code=True)
    assert again.fgram_table is not None and again.fgram_table.rows == 3000
    with torch.no_grad():
        torch.testing.assert_close(again(batch[:2]).logits, want, rtol=0, atol=0)
    served = ServedModel(tmp_path / "saved", mode="ram").logits(batch[:2])
    torch.testing.assert_close(served, want, rtol=1e-5, atol=1e-5)
    # unchanged weights: the same model file, byte for byte
    assert (tmp_path / "saved" / "model.safetensors").read_bytes() == (
        out / "model.safetensors"
    ).read_bytes()


def test_save_pretrained_of_changed_weights_reloads_the_changed_model(exported, tmp_path):
    from transformers import AutoModelForCausalLM

    out, batch = exported
    model = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()
    with torch.no_grad():
        model.model.transformer.blocks[0].ff_out.weight.mul_(1.5)
        want = model(batch[:2]).logits
    model.save_pretrained(tmp_path / "tuned")
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "tuned"), trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(again(batch[:2]).logits, want, rtol=0, atol=0)
    torch.testing.assert_close(
        ServedModel(tmp_path / "tuned", mode="ram").logits(batch[:2]), want, rtol=1e-5, atol=1e-5
    )


def test_save_pretrained_into_a_non_empty_folder_is_refused_in_one_line(hf_model, exported):
    out, _ = exported
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    with pytest.raises(ValueError, match="is not empty") as e:
        hf_model.save_pretrained(out)
    assert "\n" not in str(e.value)
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before


def test_a_folder_loads_without_remote_code_and_none_of_its_code_runs(exported, tmp_path):
    """With the package installed, ``import olmo_scone.hf`` registers the classes: no
    trust_remote_code is asked for, and a payload appended to a folder's code files is not run
    (the folder is refused by its checksums instead)."""
    out, batch = exported
    clean, tampered = tmp_path / "clean", tmp_path / "tampered"
    shutil.copytree(out, clean)
    shutil.copytree(out, tampered)
    marker = tmp_path / "payload-ran"
    for name in ("modeling_olmo_scone.py", "configuration_olmo_scone.py"):
        with open(tampered / name, "a") as f:
            f.write(f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    code = f"""
import torch, olmo_scone.hf
from transformers import AutoModelForCausalLM, pipeline
m = AutoModelForCausalLM.from_pretrained({str(clean)!r})
assert type(m).__module__ == "olmo_scone.hf.modeling", type(m).__module__
assert m.fgram_table is not None
print(m.generate(torch.tensor([{batch[0, :8].tolist()}]), max_new_tokens=4, do_sample=False)[0].tolist())
gen = pipeline("text-generation", model={str(clean)!r})
print(len(gen("The nation", max_new_tokens=3, do_sample=False)[0]["generated_text"]) > 0)
try:
    AutoModelForCausalLM.from_pretrained({str(tampered)!r})
except Exception as e:
    print("refused:", e)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists()
    lines = proc.stdout.strip().splitlines()
    served = generate(ServedModel(out), [batch[0, :8].tolist()], 4, use_cache=False)[0]
    assert json.loads(lines[-3])[8:] == served and lines[-2] == "True"
    assert (
        lines[-1].startswith("refused:")
        and "_olmo_scone.py" in lines[-1]
        and "re-export it" in lines[-1]
    )


def test_save_pretrained_rewrites_the_vllm_folders_weights(gpt2_scone, tmp_path):
    """A folder with vllm/ (the GPT-2 layout): unchanged weights give the same bytes there too;
    changed weights are written under GPT-2's names (Conv1D: transposed), never left stale."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    src = gpt2_scone.export
    model = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    model.save_pretrained(tmp_path / "same")
    name = "vllm/model.safetensors"
    assert (tmp_path / "same" / name).read_bytes() == (src / name).read_bytes()
    with torch.no_grad():
        model.model.transformer.blocks[1].ff_out.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "tuned")
    gpt2 = load_file(str(tmp_path / "tuned" / name))
    want = model.model.transformer.blocks[1].ff_out.weight.detach().t()
    torch.testing.assert_close(gpt2["transformer.h.1.mlp.c_proj.weight"], want, rtol=0, atol=0)
    assert not torch.equal(
        gpt2["transformer.h.1.mlp.c_proj.weight"],
        load_file(str(src / name))["transformer.h.1.mlp.c_proj.weight"],
    )
    # the copy's manifest binds the new file: the runtime opens it
    ServedModel(tmp_path / "tuned", mode="ram")
