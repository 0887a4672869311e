"""``DIR/vllm``: an exported model's main model in the layout vLLM runs (Hugging Face GPT-2).

Written by the export beside the project's own files and sealed by the same manifest: a GPT-2
``config.json`` (architecture ``GPT2LMHeadModel`` for a baseline, the plugin's
``SconeGPT2LMHeadModel`` for SCONE, with ``scone_*`` keys that point at the artifact one folder up),
the weights under GPT-2's names (:mod:`olmo_scone.serving.gpt2_layout`) and the tokenizer files.
The table and the matcher's index are not copied: the plugin opens them from the artifact.
A main model that GPT-2 cannot hold (RoPE, SwiGLU, ...) gets no folder and one line saying why.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..serving.gpt2_layout import gpt2_config, gpt2_refusal, gpt2_state
from . import ARCHITECTURE

FOLDER = "vllm"
#: the tokenizer files of the export (hf/folder.py) that vLLM's tokenizer loading reads
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHTS = "model.safetensors"


def vllm_config(model_cfg, has_table: bool, max_n: Optional[int]) -> dict:
    """The folder's ``config.json``: GPT-2's fields, and for SCONE where the table is."""
    out = gpt2_config(model_cfg)
    # the exported weights are float32; vLLM serves in this dtype unless told otherwise (--dtype)
    out["torch_dtype"] = "float32"
    if has_table:
        out["architectures"] = [ARCHITECTURE]
        out.update(
            scone_artifact="..",
            scone_table="ram",
            scone_verify=True,
            scone_max_n=max_n,
            # the tokenizer's vocabulary; vocab_size above is the (padded) embedding size
            scone_vocab_size=model_cfg.vocab_size,
        )
    return out


def write_vllm_folder(
    artifact: Path,
    model_cfg,
    main_state: Mapping[str, torch.Tensor],
    has_table: bool,
    max_n: Optional[int] = None,
) -> Optional[str]:
    """Write ``artifact/vllm`` after the export's Hugging Face files; returns why not, or None."""
    from ..atomic import atomic_write_json

    reason = gpt2_refusal(model_cfg)
    if reason is not None:
        return f"no {FOLDER}/ folder (vLLM): {reason}"
    out = Path(artifact) / FOLDER
    out.mkdir(exist_ok=True)
    atomic_write_json(out / "config.json", vllm_config(model_cfg, has_table, max_n))
    write_vllm_weights(out, main_state, model_cfg)
    for name in TOKENIZER_FILES:
        if (Path(artifact) / name).is_file():
            shutil.copyfile(Path(artifact) / name, out / name)
    return None


def write_vllm_weights(out: Path, main_state: Mapping[str, torch.Tensor], model_cfg) -> None:
    from ..atomic import atomic_write_bytes
    from ..safetensors_bytes import safetensors_bytes

    state = gpt2_state(main_state, model_cfg)
    atomic_write_bytes(out / WEIGHTS, safetensors_bytes(state, {"format": "pt"}))
