"""A served SCONE model as a ``transformers`` ``PreTrainedModel``, built on OLMo's own ``hf_olmo``.

(Absolute imports only: ``transformers`` copies this file when a loaded model is saved with
``save_pretrained``, and cannot follow package-relative imports.)

``SconeOLMoForCausalLM`` is ``hf_olmo.OLMoForCausalLM`` (the main model, loaded by
``from_pretrained`` from ``model.safetensors``) with the f-gram table and the host matcher attached
after loading: the table stays memory-mapped (or is read into RAM), never loaded whole as a
parameter. Each forward replaces the input embedding of every position that ends an f-gram, as the
serving runtime does (:mod:`olmo_scone.serving.runtime`); during ``generate()`` with a KV cache,
``prepare_inputs_for_generation`` hands the last K tokens to the forward so the newest token's
f-gram is matched on its context. A folder without a table (a converted baseline) is plain OLMo.

What ``hf_olmo`` leaves out and a ``transformers`` user expects is added here: positions from the
attention mask (left-padded batches, :meth:`SconeOLMoForCausalLM.forward`), beam search
(``_reorder_cache``), one clear error past the context, and ``save_pretrained`` into a folder
the project's runtime and this class both open again (:mod:`olmo_scone.hf.folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hf_olmo.configuration_olmo import OLMoConfig
from hf_olmo.modeling_olmo import OLMoForCausalLM

#: the model type in config.json; the folder's auto_map points transformers at these classes
MODEL_TYPE = "olmo-scone"


class SconeOLMoConfig(OLMoConfig):
    """OLMo's ``ModelConfig`` as a ``PretrainedConfig`` (hf_olmo's), under its own model type."""

    model_type = MODEL_TYPE


class SconeOLMoForCausalLM(OLMoForCausalLM):
    config_class = SconeOLMoConfig

    def __init__(self, config: SconeOLMoConfig, model=None, init_params: bool = False):
        super().__init__(config, model=model, init_params=init_params)
        self.fgram_table = None
        self.fgram_matcher = None
        #: the exported folder this model was loaded from (save_pretrained copies its table)
        self.export_root: Optional[Path] = None

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, *args, fgram_table: str = "mmap", **kwargs
    ):
        """``transformers``' loader for the main model; then, when the folder is a SCONE serving
        artifact, its table (``fgram_table``: ``mmap`` or ``ram``) and matcher, checked as the
        serving runtime checks them (checksums, vocabulary, tokenizer, shapes)."""
        root = Path(pretrained_model_name_or_path)
        if root.is_dir():
            from olmo_scone.serving.manifest import verify_export_folder

            # every file of the folder against the export's checksums, before transformers reads any
            verify_export_folder(root)
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if (root / "manifest.json").is_file():
            model.attach_fgram_table(root, mode=fgram_table)
        if root.is_dir() and is_export_folder(root):
            model.export_root = root.resolve()
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """A model loaded from an exported folder is saved as a whole exported folder (its table,
        matcher and tokenizer copied, the main model's weights written from this model, the
        manifest re-sealed), so both ``from_pretrained`` and the project's runtime open it again;
        plain ``transformers`` saving would drop the table and reload as another model."""
        if self.export_root is None:
            return super().save_pretrained(save_directory, *args, **kwargs)
        from olmo_scone.hf.folder import save_export_copy

        if kwargs.get("push_to_hub"):
            raise ValueError(
                "save_pretrained(push_to_hub=True) is not supported for olmo-scone folders: save locally, then upload the folder"
            )
        save_export_copy(self, self.export_root, Path(save_directory))

    def attach_fgram_table(self, root: Path, mode: str = "mmap", verify: bool = True) -> None:
        from olmo_scone.serving.artifact import open_fgram_table

        from olmo_scone.serving.fast_lookup import make_lookup

        self.fgram_table, self.fgram_matcher = open_fgram_table(
            Path(root), mode, verify, vocab_size=self.config.vocab_size, d_model=self.config.d_model
        )
        self.fgram_lookup = make_lookup(self.fgram_matcher)

    def fgram_input_embeddings(
        self, input_ids: torch.Tensor, context: torch.Tensor, padding: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Token embeddings of ``input_ids`` ``[B, T]`` with each position that ends an f-gram (matched
        on ``context``, ``[B, T']`` ending with ``input_ids``) replaced by its table row; positions
        where ``padding`` (``[B, T]``) is true keep theirs."""
        from olmo_scone.model import replace_embeddings

        x = self.model.transformer.wte(input_ids)
        rows = self.fgram_lookup.match_new(context.cpu().numpy(), input_ids.shape[1])
        if padding is not None:
            rows = np.where(padding.cpu().numpy(), -1, rows)
        hit = rows >= 0
        if not hit.any():
            return x
        uniq, inverse = np.unique(rows[hit], return_inverse=True)
        emb = self.fgram_table.gather(uniq).to(x.device)
        matched = torch.from_numpy(hit).to(x.device)
        return replace_embeddings(
            x, matched, emb, torch.from_numpy(inverse.reshape(-1)).to(x.device)
        )

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        attention_bias: Optional[torch.Tensor] = None,
        past_key_values=None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        cache_position=None,
        position_ids: Optional[torch.LongTensor] = None,
        fgram_context: Optional[torch.Tensor] = None,
    ):
        """hf_olmo's forward (its parameters spelled out: ``generate()`` checks its keyword arguments
        against them), with matched input embeddings replaced by their table rows; ``fgram_context``
        ([B, T'] ending with ``input_ids``) is what the f-grams are matched on (default: the input).

        ``position_ids`` (``[B, T]``, made from the attention mask by ``generate()``) place each
        token where it would be without left padding. OLMo's forward has no such argument and adds
        ``wpe(past + arange(T))`` itself, so for learned positions the difference between the
        wanted and that position embedding is added to the input embeddings first (exactly zero
        in rows without padding). RoPE and ALiBi only see position differences, which left padding
        does not change."""
        past = past_key_values[0][0].size(-2) if past_key_values else 0
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        self.check_context(past + length)
        padding = None
        if attention_mask is not None and input_ids is not None:
            padding = attention_mask[:, -input_ids.shape[1] :] == 0
        if self.fgram_matcher is not None and input_ids is not None and inputs_embeds is None:
            context = input_ids if fgram_context is None else fgram_context
            inputs_embeds = self.fgram_input_embeddings(input_ids, context, padding)
        if position_ids is not None and self.learned_positions:
            if inputs_embeds is None:
                inputs_embeds = self.model.transformer.wte(input_ids)
            inputs_embeds = inputs_embeds + self.position_shift(position_ids, past)
        return super().forward(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            attention_bias=attention_bias,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            cache_position=cache_position,
        )

    @property
    def learned_positions(self) -> bool:
        return not (self.config.rope or self.config.alibi)

    def check_context(self, total: int) -> None:
        """One error past the context instead of an ``IndexError`` from the position table."""
        limit = self.config.max_sequence_length
        if self.learned_positions and total > limit:
            raise ValueError(
                f"{total} tokens (prompt + new tokens) exceed this model's context of {limit} "
                "(max_position_embeddings): shorten the prompt or max_new_tokens"
            )

    def position_shift(self, position_ids: torch.Tensor, past: int) -> torch.Tensor:
        """``wpe(position_ids) - wpe(past + arange(T))``: what turns OLMo's own positions into
        ``position_ids`` (see :meth:`forward`)."""
        wpe = self.model.transformer.wpe
        default = torch.arange(past, past + position_ids.shape[1], device=position_ids.device)
        return wpe(position_ids) - wpe(default)[None]

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, past_key_values=None, attention_mask=None, **kwargs
    ):
        inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask, **kwargs
        )
        if attention_mask is not None and bool((attention_mask == 0).any()):
            # a left-padded batch: each row's positions count its real tokens only (as GPT-2's)
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs["position_ids"] = positions[:, -inputs["input_ids"].shape[1] :]
        if self.fgram_matcher is not None and past_key_values:
            inputs["fgram_context"] = input_ids[:, -self.fgram_matcher.max_n :]
        return inputs

    def _reorder_cache(self, past_key_values, beam_idx):
        """Beam search: OLMo's cache is one ``(key, value)`` pair a layer, batch first."""
        return tuple(
            tuple(t.index_select(0, beam_idx.to(t.device)) for t in layer)
            for layer in past_key_values
        )


def is_export_folder(root: Path) -> bool:
    """A SCONE serving artifact or a converted baseline (both written by export_embeddings.py)."""
    from olmo_scone.serving.manifest import BASELINE_RECORD, MANIFEST

    return (root / MANIFEST).is_file() or (root / BASELINE_RECORD).is_file()


def register_auto_classes() -> None:
    """Let ``AutoConfig`` / ``AutoModelForCausalLM`` open an exported folder with the installed
    package's classes: ``trust_remote_code`` is then not needed, and the folder's own code files
    are not run (transformers prefers a registered model type to a folder's ``auto_map``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoConfig.register(MODEL_TYPE, SconeOLMoConfig, exist_ok=True)
    AutoModelForCausalLM.register(SconeOLMoConfig, SconeOLMoForCausalLM, exist_ok=True)
