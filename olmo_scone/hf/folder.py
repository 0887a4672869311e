"""The Hugging Face side of an exported folder: what ``AutoModelForCausalLM.from_pretrained(DIR)``
(after ``import olmo_scone.hf``, or with ``trust_remote_code=True``) and
``AutoTokenizer.from_pretrained(DIR)`` read, and what ``save_pretrained`` writes
(:func:`save_export_copy`).

Written beside the project's own files (manifest, checksums, config.yaml, model.safetensors, table
shards, matcher): ``config.json`` (OLMo's model config, hf_olmo's format, with an ``auto_map``
naming the two code files), ``configuration_olmo_scone.py`` and ``modeling_olmo_scone.py`` (two
lines each: they import the installed ``olmo-scone`` package), the tokenizer files,
``generation_config.json`` and a model card. Only ``model.safetensors`` is loaded by
``from_pretrained``; the table shards are not listed anywhere it looks, and the model class
memory-maps them after loading.
"""

from __future__ import annotations

import json
import os
import shutil
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
        # what pipeline("text-generation", model=DIR) and generate()'s length checks look for
        tokenizer_class="PreTrainedTokenizerFast",
        max_position_embeddings=cfg.model.max_sequence_length,
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


def save_export_copy(model, source: Path, dest: Path) -> None:
    """``model.save_pretrained(dest)`` for a model loaded from the exported folder ``source``: every
    file of ``source`` (hard-linked where the filesystem allows, else copied), the main model's
    weights written from ``model`` in the export's layout, the manifest (or a baseline's record)
    updated for them and re-sealed; all in a temporary folder renamed to ``dest``."""
    from ..atomic import atomic_directory, atomic_write_bytes, atomic_write_json, sha256_file
    from ..export import MAIN_MODEL_METADATA
    from ..safetensors_bytes import safetensors_bytes
    from ..serving.manifest import BASELINE_RECORD, MANIFEST, seal

    dest = Path(dest)
    if dest.resolve() == source or (dest.is_dir() and any(dest.iterdir())):
        raise ValueError(
            f"save_pretrained: {dest} is not empty (an exported folder is saved into a new or empty folder)"
        )
    from ..config import SconeTrainConfig, load_config
    from ..vllm_plugin.folder import FOLDER, WEIGHTS, write_vllm_weights

    vllm_weights = f"{FOLDER}/{WEIGHTS}"
    state = _main_model_state(model, source)
    record = MANIFEST if (source / MANIFEST).is_file() else BASELINE_RECORD
    with atomic_directory(dest, overwrite=dest.exists()) as tmp:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if path.is_dir() or rel.as_posix() in ("model.safetensors", vllm_weights, record):
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(path, tmp / rel)
        atomic_write_bytes(tmp / "model.safetensors", safetensors_bytes(state, MAIN_MODEL_METADATA))
        info = json.loads((source / record).read_text("utf-8"))
        info["model_sha256"] = sha256_file(tmp / "model.safetensors")
        written = ["model.safetensors"]
        if (source / vllm_weights).is_file():
            # the same weights under GPT-2's names, for vLLM (vllm_plugin/folder.py)
            write_vllm_weights(
                tmp / FOLDER, state, load_config(SconeTrainConfig, source / "config.yaml").model
            )
            written.append(vllm_weights)
        for rel in written:
            info["files"][rel] = {
                "bytes": (tmp / rel).stat().st_size,
                "sha256": sha256_file(tmp / rel),
            }
        atomic_write_json(
            tmp / record, seal({k: v for k, v in info.items() if k != "record_sha256"})
        )


def _main_model_state(model, source: Path) -> dict:
    """``model``'s main-model weights under the export's names, refused if any name or shape
    differs from the folder's (its table and config.yaml describe that model, not another)."""
    from safetensors import safe_open

    state = {
        k.removeprefix("model."): v.detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
    }
    with safe_open(str(source / "model.safetensors"), "pt") as f:
        want = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    state = {k: v for k, v in state.items() if k in want}
    for k, shape in want.items():
        if k not in state or tuple(state[k].shape) != shape:
            raise ValueError(
                f"save_pretrained: the model's {k} no longer matches {source}/model.safetensors "
                f"({shape}); its table was exported for that model: re-export from training instead"
            )
    return state


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
import olmo_scone.hf  # registers the model type with transformers: no trust_remote_code needed
model = AutoModelForCausalLM.from_pretrained(DIR)  # fgram_table="ram" reads the table into RAM
out = model.generate(**tok("The nation", return_tensors="pt"), max_new_tokens=20, do_sample=False)
print(tok.decode(out[0]))
```

`modeling_olmo_scone.py` and `configuration_olmo_scone.py` import the **installed `olmo-scone`
package** (and OLMo's `ai2-olmo`, whose `hf_olmo` classes it builds on): install it first
(`make setup` in its repository, or `pip install -e .` there). `import olmo_scone.hf` registers
its classes, so the folder's own code files are never run; without that import,
`trust_remote_code=True` is your explicit opt-in to running them. The weights, the table and the
vocabulary are read only through safetensors and numpy files, never unpickled.
`model.save_pretrained(NEW_DIR)` writes a whole folder again (table and matcher included).

The project's own runtime serves the same folder: `scripts/evaluate.py DIR`, `scripts/generate.py DIR`.
"""
