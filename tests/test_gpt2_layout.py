"""The main model in GPT-2's layout (serving/gpt2_layout.py): Hugging Face's own GPT-2 gives the
project's logits, for a baseline and, with the table rows as input embeddings, for SCONE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from olmo_scone.export import main_model_state
from olmo_scone.serving.gpt2_layout import gpt2_config, gpt2_refusal, gpt2_state


@pytest.fixture(scope="module")
def gelu_scone(small_scone, tmp_path_factory):
    """conftest's small SCONE model with the shipped configs' MLP (exact GELU, not OLMo's default
    SwiGLU), same f-grams: (config, model, folder holding config.yaml, batch)."""
    from olmo_scone.fgrams.vocab import load_vocab
    from olmo_scone.model import SconeOLMo

    cfg, _, _, batch = small_scone
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, activation_type="gelu"))
    d = tmp_path_factory.mktemp("gelu-scone")
    cfg.save(d / "config.yaml")
    torch.manual_seed(0)
    model = SconeOLMo(cfg.model, fgram_vocab=load_vocab(cfg.model.fgram.vocab_path)).eval()
    return cfg, model, d, batch


def _gpt2(cfg, model):
    from transformers import GPT2Config, GPT2LMHeadModel

    fields = gpt2_config(cfg.model)
    gpt2 = GPT2LMHeadModel(GPT2Config(**fields)).eval()
    missing, unexpected = gpt2.load_state_dict(
        gpt2_state(main_model_state(model, cfg), cfg.model), strict=False
    )
    # GPT-2's lm_head is tied to wte; its attention masks are buffers, not weights
    assert unexpected == [] and all(
        k == "lm_head.weight" or k.endswith(".attn.bias") or k.endswith(".attn.masked_bias")
        for k in missing
    ), missing
    return gpt2


def test_hugging_face_gpt2_gives_the_main_models_logits(gelu_scone):
    from olmo.model import OLMo

    cfg, model, _, batch = gelu_scone
    with torch.no_grad():
        got = _gpt2(cfg, model)(batch[:3]).logits
        # the main model alone (OLMo's own forward, no f-gram replaced)
        want = OLMo.forward(model, batch[:3]).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_with_table_rows_as_input_embeddings_gpt2_gives_the_served_scone_logits(
    gelu_scone, tmp_path
):
    from olmo_scone.export import export_model
    from olmo_scone.serving.runtime import ServedModel

    cfg, model, d, batch = gelu_scone
    out = tmp_path / "served"
    export_model(model, cfg, d / "config.yaml", out, dtype="fp32", batch_size=512)
    served = ServedModel(out, mode="ram")
    from olmo_scone.hf.modeling import SconeOLMoForCausalLM

    hf = SconeOLMoForCausalLM.from_pretrained(str(out)).eval()
    gpt2 = _gpt2(cfg, model)
    with torch.no_grad():
        embeds = hf.fgram_input_embeddings(batch[:3], batch[:3])
        got = gpt2(inputs_embeds=embeds).logits
    want = served.logits(batch[:3])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the table did replace positions (else this would only repeat the baseline test)
    assert not torch.equal(embeds, model.transformer.wte(batch[:3]))


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"rope": True}, "rope: true"),
        ({"activation_type": "swiglu"}, "activation_type swiglu"),
        ({"weight_tying": False}, "weight_tying: false"),
        ({"include_bias": False}, "include_bias: false"),
        ({"n_kv_heads": 1}, "grouped or multi-query KV heads"),
    ],
)
def test_a_model_gpt2_cannot_hold_is_refused_with_its_reason(gelu_scone, change, reason):
    cfg = gelu_scone[0]
    assert gpt2_refusal(cfg.model) is None
    assert reason in gpt2_refusal(dataclasses.replace(cfg.model, **change))


def test_every_shipped_config_maps_onto_gpt2():
    from pathlib import Path

    from olmo_scone.config import SconeTrainConfig, load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "olmo").glob("*.yaml"))
    assert len(configs) > 5
    for path in configs:
        assert gpt2_refusal(load_config(SconeTrainConfig, path).model) is None, path.name


def test_an_export_of_a_model_gpt2_cannot_hold_has_no_vllm_folder_and_says_why(
    gelu_scone, tmp_path, capsys
):
    """The export still writes the artifact (the runtime and transformers serve it); vllm/ is left
    out and one line names the reason; the manifest records that there is none."""
    import json

    from olmo_scone.export import export_model

    cfg, model, d, _ = gelu_scone
    rope = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, rope=True))
    rope.save(tmp_path / "config.yaml")
    export_model(model, rope, tmp_path / "config.yaml", tmp_path / "art", dtype="fp32")
    lines = [x for x in capsys.readouterr().out.splitlines() if "vllm" in x.lower()]
    assert lines == [
        "no vllm/ folder (vLLM): the main model does not map onto GPT-2: rope: true (GPT-2 has learned absolute positions only)"
    ]
    assert not (tmp_path / "art" / "vllm").exists()
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["vllm"] is None
    # the same model with learned positions gets its folder, listed and sealed by the manifest
    export_model(model, cfg, d / "config.yaml", tmp_path / "gpt2", dtype="fp32")
    files = json.loads((tmp_path / "gpt2" / "manifest.json").read_text())["files"]
    assert {"vllm/config.json", "vllm/model.safetensors", "vllm/tokenizer.json"} <= set(files)
