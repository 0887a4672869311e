"""Export + serving: served logits equal the training-mode model's on real text; bad artifacts refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from olmo_scone.config import FgramConfig, SconeModelConfig, SconeTrainConfig
from olmo_scone.errors import SconeError
from olmo_scone.export import export_model
from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
from olmo_scone.fgrams.vocab import load_vocab, save_vocab
from olmo_scone.model import SconeOLMo
from olmo_scone.serving.runtime import ServedModel


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    tokens = np.concatenate([np.asarray(m) for m in prepared.memmaps("train")])[:200_000]
    (d / "t.npy").write_bytes(tokens.tobytes())
    r = count_fgrams([TokenSource(d / "t.npy", tokens.dtype, len(tokens))], 50280, 50279, 1,
                     CountSettings(num_fgrams=3000, min_count=3, processes=1))  # fmt: skip
    vpath = d / "fgrams.safetensors"
    save_vocab(vpath, r.tokens, r.lengths, r.counts, {"tokenizer_sha256": prepared.tokenizer["sha256"]})
    cfg = SconeTrainConfig.new()
    cfg.model = SconeModelConfig(d_model=64, n_heads=4, n_layers=2, max_sequence_length=64, vocab_size=50280,
                                 embedding_size=50304, eos_token_id=50279, pad_token_id=1, attention_dropout=0.0,
                                 residual_dropout=0.0, embedding_dropout=0.0, init_device="cpu",
                                 fgram=FgramConfig(vocab_path=str(vpath), n_layers=2))  # fmt: skip
    cfg.save(d / "config.yaml")
    torch.manual_seed(0)
    model = SconeOLMo(cfg.model, fgram_vocab=load_vocab(vpath)).eval()
    batch = torch.from_numpy(tokens[: 8 * 64].astype(np.int64).reshape(8, 64))
    return cfg, model, d, batch


@pytest.mark.parametrize("mode", ["ram", "mmap"])
def test_served_logits_equal_training_mode(trained, mode):
    cfg, model, d, batch = trained
    out = d / f"artifact-fp32-{mode}"
    export_model(model, cfg, d / "config.yaml", out, dtype="fp32", shard_gb=0.0002, batch_size=512)
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) > 1
    with torch.no_grad():
        want = model(batch, match=True).logits
    served = ServedModel(out, mode=mode)
    assert served.model.fgram_model is None  # A_fgram is dropped
    torch.testing.assert_close(served.logits(batch), want, rtol=1e-5, atol=1e-5)


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
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "vocab_sha256": "f" * 64}))
    with pytest.raises(SconeError, match="vocabulary does not match"):
        ServedModel(out)
    (out / "manifest.json").write_text(json.dumps({**m, "d_model": 32}))
    with pytest.raises(SconeError, match="d_model 32 does not match"):
        ServedModel(out)


def test_kv_cache_generation_equals_full_recompute(trained):
    from olmo_scone.serving.generate import generate

    cfg, model, d, batch = trained
    out = d / "artifact-gen"
    if not out.exists():
        export_model(model, cfg, d / "config.yaml", out, dtype="fp32", batch_size=512)
    served = ServedModel(out)
    prompts = [batch[0, :10].tolist(), batch[1, :10].tolist(), batch[2, :7].tolist()]
    cached = generate(served, prompts, max_new_tokens=12)
    full = generate(served, prompts, max_new_tokens=12, use_cache=False)
    assert cached == full and all(len(c) == 12 for c in cached)
    # independent of batching: each prompt alone gives the same greedy continuation
    assert [generate(served, [p], 12)[0] for p in prompts] == cached
    sampled = generate(served, prompts, 12, temperature=0.8, top_k=50, top_p=0.9, seed=1)
    assert sampled == generate(served, prompts, 12, temperature=0.8, top_k=50, top_p=0.9, seed=1)
