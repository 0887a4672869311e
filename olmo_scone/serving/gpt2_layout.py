"""The main model in Hugging Face GPT-2's layout: what serving engines (vLLM's ``GPT2LMHeadModel``)
run without OLMo's code.

Every config in ``configs/olmo`` builds a main model that *is* GPT-2 up to names: learned absolute
positions, a sequential pre-LayerNorm block with affine LayerNorms, a fused QKV projection with
biases, a non-gated exact-GELU MLP, tied embeddings. The mapping renames and transposes (GPT-2's
``Conv1D`` stores ``[in, out]``); a config with anything GPT-2 has no place for (RoPE, ALiBi,
SwiGLU, grouped KV heads, QK norms, ...) is refused with the first reason found.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

#: OLMo block parameter -> GPT-2 block parameter, and whether GPT-2 stores it transposed (Conv1D)
BLOCK = {
    "attn_norm.weight": ("ln_1.weight", False),
    "attn_norm.bias": ("ln_1.bias", False),
    "att_proj.weight": ("attn.c_attn.weight", True),
    "att_proj.bias": ("attn.c_attn.bias", False),
    "attn_out.weight": ("attn.c_proj.weight", True),
    "attn_out.bias": ("attn.c_proj.bias", False),
    "ff_norm.weight": ("ln_2.weight", False),
    "ff_norm.bias": ("ln_2.bias", False),
    "ff_proj.weight": ("mlp.c_fc.weight", True),
    "ff_proj.bias": ("mlp.c_fc.bias", False),
    "ff_out.weight": ("mlp.c_proj.weight", True),
    "ff_out.bias": ("mlp.c_proj.bias", False),
}


def _value(cfg, key: str, default: Any = None) -> Any:
    v = getattr(cfg, key, default)
    return getattr(v, "value", v)  # OLMo's StrEnums


def gpt2_refusal(cfg) -> Optional[str]:
    """Why the main model of ``cfg`` (OLMo's ``ModelConfig``) has no GPT-2 layout, or None."""
    checks = [
        (_value(cfg, "rope"), "rope: true (GPT-2 has learned absolute positions only)"),
        (_value(cfg, "alibi"), "alibi: true (GPT-2 has learned absolute positions only)"),
        (_value(cfg, "block_type") != "sequential", f"block_type {_value(cfg, 'block_type')}"),
        (
            _value(cfg, "activation_type") != "gelu",
            f"activation_type {_value(cfg, 'activation_type')} (GPT-2's MLP is non-gated GELU)",
        ),
        (
            _value(cfg, "layer_norm_type") != "default",
            f"layer_norm_type {_value(cfg, 'layer_norm_type')}",
        ),
        (not _value(cfg, "layer_norm_with_affine"), "LayerNorm without weights"),
        (_value(cfg, "bias_for_layer_norm") is False, "LayerNorm without biases"),
        (
            not _value(cfg, "include_bias"),
            "include_bias: false (GPT-2's linear layers have biases)",
        ),
        (not _value(cfg, "weight_tying"), "weight_tying: false (GPT-2 ties its output layer)"),
        (_value(cfg, "attention_layer_norm"), "attention_layer_norm (QK norms)"),
        (_value(cfg, "clip_qkv") is not None, "clip_qkv"),
        (_value(cfg, "norm_after"), "norm_after (post-norm blocks)"),
        (_value(cfg, "scale_logits"), "scale_logits"),
        (
            _value(cfg, "multi_query_attention")
            or _value(cfg, "n_kv_heads") not in (None, _value(cfg, "n_heads")),
            "grouped or multi-query KV heads",
        ),
    ]
    for bad, reason in checks:
        if bad:
            return f"the main model does not map onto GPT-2: {reason}"
    return None


def hidden_size(cfg) -> int:
    return _value(cfg, "mlp_hidden_size") or _value(cfg, "mlp_ratio") * _value(cfg, "d_model")


def gpt2_config(cfg) -> Dict[str, Any]:
    """``config.json`` fields of Hugging Face's ``GPT2Config`` for the main model of ``cfg``."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": _value(cfg, "embedding_size") or _value(cfg, "vocab_size"),
        "n_positions": _value(cfg, "max_sequence_length"),
        "n_ctx": _value(cfg, "max_sequence_length"),
        "n_embd": _value(cfg, "d_model"),
        "n_layer": _value(cfg, "n_layers"),
        "n_head": _value(cfg, "n_heads"),
        "n_inner": hidden_size(cfg),
        # OLMo's "gelu" is torch's exact GELU; GPT-2's default "gelu_new" is the tanh approximation
        "activation_function": "gelu",
        "layer_norm_epsilon": _value(cfg, "layer_norm_eps"),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "bos_token_id": _value(cfg, "eos_token_id"),
        "eos_token_id": _value(cfg, "eos_token_id"),
        "pad_token_id": _value(cfg, "pad_token_id"),
    }


def gpt2_state(main_state: Mapping[str, torch.Tensor], cfg) -> Dict[str, torch.Tensor]:
    """The main model's weights (export names: ``transformer.blocks.<i>.<param>``, ``wte``,
    ``wpe``, ``ln_f``; no output layer, it is tied) under GPT-2's names."""
    reason = gpt2_refusal(cfg)
    if reason is not None:
        from ..errors import fail

        fail(reason)
    out = {
        "transformer.wte.weight": main_state["transformer.wte.weight"],
        "transformer.wpe.weight": main_state["transformer.wpe.weight"],
        "transformer.ln_f.weight": main_state["transformer.ln_f.weight"],
        "transformer.ln_f.bias": main_state["transformer.ln_f.bias"],
    }
    for i in range(_value(cfg, "n_layers")):
        for olmo, (gpt2, transposed) in BLOCK.items():
            w = main_state[f"transformer.blocks.{i}.{olmo}"]
            out[f"transformer.h.{i}.{gpt2}"] = w.t().contiguous() if transposed else w
    return out
