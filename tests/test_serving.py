"""Export + serving: served logits equal the training-mode model's on real text; bad artifacts refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from olmo_scone.errors import SconeError
from olmo_scone.export import export_model
from olmo_scone.serving.runtime import ServedModel


@pytest.fixture(scope="module")
def trained(small_scone):
    return small_scone


#: the artifacts several tests serve, each exported once per module with these settings (whichever
#: test asks first), so no test's result depends on which ran before it
EXPORTS = {
    "fp32-sharded": dict(dtype="fp32", shard_gb=0.0002),
    "bf16-many-shards": dict(dtype="bf16", shard_gb=0.0001),
    "int8-many-shards": dict(dtype="int8", shard_gb=0.0001),
}


@pytest.fixture(scope="module")
def exported(trained):
    cfg, model, d, _ = trained
    made = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = d / f"artifact-{name}"
            export_model(model, cfg, d / "config.yaml", made[name], batch_size=512, **EXPORTS[name])
        return made[name]

    return get


@pytest.mark.parametrize("mode", ["ram", "mmap"])
def test_served_logits_equal_training_mode(trained, exported, mode):
    cfg, model, d, batch = trained
    out = exported("fp32-sharded")
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) > 1
    with torch.no_grad():
        want = model(batch, match=True).logits
    served = ServedModel(out, mode=mode)
    assert served.model.fgram_model is None  # A_fgram is dropped
    torch.testing.assert_close(served.logits(batch), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["ram", "mmap"])
@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_table_gather_into_buffer_equals_rows(exported, mode, dtype):
    """gather() (what serving copies to the device) is the stored rows, across shard edges."""
    from olmo_scone.serving.table import FgramTable
    from olmo_scone.serving.table_format import dequantize, read_shard

    out = exported(f"{dtype}-many-shards")
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["shards"]) > 2
    full = torch.cat(
        [dequantize(read_shard(out / s["file"])[0], dtype).float() for s in m["shards"]]
    )
    table = FgramTable(out, mode)
    rows = np.random.default_rng(0).integers(0, m["rows"], 500)
    buf = torch.empty((len(rows), m["d_model"]), dtype=table.transfer_dtype)
    got = table.gather(rows, out=buf)
    assert got.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(got.float(), full[torch.from_numpy(rows)], rtol=0, atol=0)
    torch.testing.assert_close(
        table[torch.from_numpy(rows[:7])], full[torch.from_numpy(rows[:7])], rtol=0, atol=0
    )
    with pytest.raises(SconeError, match="out of range"):
        table.gather(np.array([m["rows"]]))


def test_prefetching_evaluation_equals_plain(trained, exported):
    """Perplexity with the next batch matched/gathered in a background thread is the same number,
    and equals the training-mode model's."""
    import math

    from olmo_scone.serving.evaluate import perplexity

    cfg, model, d, batch = trained
    out = exported("fp32-sharded")
    served = ServedModel(out)
    chunks = batch.numpy()
    a = perplexity(served, chunks, batch_size=3, prefetch=True)
    b = perplexity(served, chunks, batch_size=3, prefetch=False)
    with torch.no_grad():
        logits = model(batch, match=True).logits
    ref = float(
        torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
    )
    assert a["tokens"] == b["tokens"] == 8 * 63
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert a["perplexity"] == pytest.approx(math.exp(ref), rel=1e-5)


def test_quantized_tables_change_perplexity_little(trained):
    cfg, model, d, batch = trained

    def ppl(logits):
        lf = logits[:, :-1].reshape(-1, logits.shape[-1])
        return float(torch.exp(torch.nn.functional.cross_entropy(lf, batch[:, 1:].reshape(-1))))

    with torch.no_grad():
        ref = ppl(model(batch, match=True).logits)
    for dtype, tol in [("bf16", 0.01), ("int8", 0.01), ("int4", 0.05)]:
        out = d / f"artifact-{dtype}"
        export_model(model, cfg, d / "config.yaml", out, dtype=dtype, batch_size=512)
        got = ppl(ServedModel(out).logits(batch))
        assert abs(got - ref) / ref < tol, (dtype, got, ref)


def test_bad_artifacts_are_refused(trained, tmp_path):
    import shutil

    cfg, model, d, batch = trained
    out = tmp_path / "a"
    export_model(model, cfg, d / "config.yaml", out, dtype="fp32", shard_gb=0.0002, batch_size=512)
    broken = tmp_path / "b"
    shutil.copytree(out, broken)
    shard = broken / "table-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-7] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(SconeError, match="checksum"):
        ServedModel(broken)
    shard.unlink()
    with pytest.raises(SconeError, match="table shard missing"):
        ServedModel(broken)
    with pytest.raises(SconeError, match="tokenizer sha256"):
        ServedModel(out, tokenizer_sha256="0" * 64)
    from olmo_scone.serving.manifest import seal

    m = json.loads((out / "manifest.json").read_text())
    # an edit is caught by the manifest's own checksum; a crafted one (resealed) by the field's check
    (out / "manifest.json").write_text(json.dumps({**m, "vocab_sha256": "f" * 64}))
    with pytest.raises(SconeError, match="does not match its own checksum"):
        ServedModel(out)
    (out / "manifest.json").write_text(json.dumps(seal({**m, "vocab_sha256": "f" * 64})))
    with pytest.raises(SconeError, match="vocabulary does not match"):
        ServedModel(out)
    (out / "manifest.json").write_text(json.dumps(seal({**m, "d_model": 32})))
    with pytest.raises(SconeError, match="d_model 32 does not match"):
        ServedModel(out)


def test_kv_cache_generation_equals_full_recompute(trained, exported):
    from olmo_scone.serving.generate import generate

    cfg, model, d, batch = trained
    out = exported("fp32-sharded")
    served = ServedModel(out)
    prompts = [batch[0, :10].tolist(), batch[1, :10].tolist(), batch[2, :7].tolist()]
    cached = generate(served, prompts, max_new_tokens=12)
    full = generate(served, prompts, max_new_tokens=12, use_cache=False)
    assert cached == full and all(len(c) == 12 for c in cached)
    # independent of batching: each prompt alone gives the same greedy continuation
    assert [generate(served, [p], 12)[0] for p in prompts] == cached
    sampled = generate(served, prompts, 12, temperature=0.8, top_k=50, top_p=0.9, seed=1)
    assert sampled == generate(served, prompts, 12, temperature=0.8, top_k=50, top_p=0.9, seed=1)


EXPORTS["bf16"] = dict(dtype="bf16")
REPO = Path(__file__).resolve().parents[1]


def _script(name: str, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts" / name), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def script_perplexities(exported, baseline_run, prepared):
    """evaluate.py's perplexity of a SCONE artifact and of a baseline checkpoint, table in RAM and mmap."""
    art = exported("bf16")
    got = {}
    for kind, target, seq in (("scone", art, 64), ("baseline", baseline_run, 128)):
        for table in ("ram", "mmap"):
            ev = _script(
                "evaluate.py",
                target,
                "--table",
                table,
                "--tokens",
                prepared.root,
                "--max-batches",
                2,
                "--json",
            )
            assert ev.returncode == 0, ev.stderr[-2000:]
            r = json.loads(ev.stdout.strip().splitlines()[-1])
            assert (
                r["tokens"] == 16 * (seq - 1) and 1 < r["perplexity"] < 1e6
            )  # seq: each model's context
            got[(kind, table)] = r["perplexity"]
    return got


def test_evaluate_script_serves_ram_and_mmap_alike(script_perplexities):
    for kind in ("scone", "baseline"):
        assert script_perplexities[(kind, "ram")] == pytest.approx(
            script_perplexities[(kind, "mmap")], rel=1e-6
        )


def test_evaluate_script_on_a_baseline_equals_a_plain_olmo_forward(
    script_perplexities, baseline_run, prepared
):
    from olmo_scone.serving.evaluate import chunks_from_tokens, token_streams
    from olmo_scone.train.checkpoint import load_trained_model

    chunks = torch.from_numpy(
        chunks_from_tokens(token_streams(str(prepared.root), "valid"), 128)[:16]
    )
    _, plain = load_trained_model(baseline_run)
    with torch.no_grad():
        logits = plain(chunks).logits
    lf = logits[:, :-1].reshape(-1, logits.shape[-1])
    ref = float(torch.exp(torch.nn.functional.cross_entropy(lf, chunks[:, 1:].reshape(-1))))
    assert script_perplexities[("baseline", "ram")] == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("kind", ["scone", "baseline"])
def test_generate_script_continues_each_prompt(exported, baseline_run, kind):
    target = exported("bf16") if kind == "scone" else baseline_run
    gen = _script(
        "generate.py",
        target,
        "--prompt",
        "The nation",
        "--prompt",
        "We the people of",
        "--max-new-tokens",
        5,
    )
    assert gen.returncode == 0, gen.stderr[-2000:]
    lines = gen.stdout.strip().splitlines()
    assert lines[-2].startswith("The nation") and lines[-1].startswith("We the people of")


def test_demo_report_gives_the_evaluate_scripts_numbers(
    script_perplexities, exported, baseline_run, trained, prepared
):
    """make demo's report (olmo_scone/recipes/demo.py) reports the very perplexities evaluate.py does,
    and counts only the main model as resident."""
    from olmo_scone.recipes.demo import evaluate_models, render

    _, model, _, _ = trained
    rows = evaluate_models(
        {"baseline": baseline_run, "SCONE": exported("bf16")},
        prepared.root,
        max_new_tokens=4,
        max_batches=1,
    )
    assert rows[0]["perplexity"] == pytest.approx(
        script_perplexities[("baseline", "mmap")], rel=1e-6
    )
    assert rows[1]["perplexity"] == pytest.approx(script_perplexities[("scone", "mmap")], rel=1e-6)
    assert rows[1]["fgrams"] == 3000 and rows[0]["fgrams"] == 0 and rows[1]["table_gb"] > 0
    main_only = sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith("fgram_model.")
    )
    assert rows[1]["resident_params"] == main_only < sum(p.numel() for p in model.parameters())
    text = render(rows)
    assert "baseline" in text and "SCONE" in text and "3,000 x bf16" in text
    assert (
        "continuations (temperature 0.8, top-k 40, seed 0):" in text
    )  # seeded sampling, said in the report


def test_evaluate_script_on_a_missing_folder_is_one_line(tmp_path):
    bad = _script("evaluate.py", tmp_path / "nothing", "--tokens", "x")
    assert bad.returncode == 2 and "neither a serving artifact" in bad.stderr


def test_evaluate_refuses_token_files_of_another_tokenizer(trained, prepared, tmp_path):
    """Token ids mean nothing under another tokenizer: evaluate.py stops before loading any batch."""
    import shutil

    from olmo_scone.data.tokenizers import resolve_tokenizer
    from olmo_scone.serving.cli import evaluate_main

    cfg, model, d, batch = trained
    art = d / "artifact-fp32-ram"
    if not art.exists():
        export_model(model, cfg, d / "config.yaml", art, dtype="fp32", batch_size=512)
    other = tmp_path / "other-tokens"
    shutil.copytree(prepared.root, other)
    m = json.loads((other / "manifest.json").read_text())
    spec = resolve_tokenizer("allenai_dolma2")
    m["tokenizer"].update(name=spec.name, sha256=spec.sha256)
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(
        SconeError, match="tokenized with allenai_dolma2, not allenai_gpt-neox-olmo-dolma-v1_5"
    ):
        evaluate_main([str(art), "--tokens", str(other), "--max-batches", "1"])
    assert evaluate_main([str(art), "--tokens", str(prepared.root), "--max-batches", "1"]) == 0


@pytest.mark.parametrize("mode", ["ram", "mmap"])
def test_the_artifact_carries_the_matchers_index(trained, prepared, mode):
    """The served matcher is opened from the artifact's index files (memory-mapped with --table
    mmap: nothing read up front) and matches real text exactly as a matcher built from the
    vocabulary does."""
    from olmo_scone.fgrams.matching import FgramMatcher

    cfg, model, d, batch = trained
    out = d / f"artifact-index-{mode}"
    export_model(model, cfg, d / "config.yaml", out, dtype="bf16", batch_size=512)
    m = json.loads((out / "manifest.json").read_text())
    assert (
        m["format_version"] == 5
        and "vllm" in m
        and set(m["matcher"]["files"])
        == {
            "index_keys",
            "index_values",
            "node_row",
            "lengths",
        }
    )
    served = ServedModel(out, mode=mode)
    arrays = [
        served.matcher.index.keys,
        served.matcher.index.values,
        served.matcher.node_row,
        served.matcher.lengths,
    ]
    assert all(isinstance(a.base, np.memmap) for a in arrays) == (
        mode == "mmap"
    )  # views of the mapping, not copies
    assert served.model._vocab is None  # the vocabulary is not kept for serving
    fresh = FgramMatcher(model._vocab, cfg.model.vocab_size)
    text = (
        np.concatenate([np.asarray(x) for x in prepared.memmaps("valid")])[: 64 * 256]
        .astype(np.int64)
        .reshape(64, 256)
    )
    got, want = served.matcher.match_batch(text), fresh.match_batch(text)
    assert (want >= 0).mean() > 0.2 and np.array_equal(got, want)
