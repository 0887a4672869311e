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
        return model

    def attach_fgram_table(self, root: Path, mode: str = "mmap", verify: bool = True) -> None:
        from olmo_scone.serving.runtime import open_fgram_table

        self.fgram_table, self.fgram_matcher = open_fgram_table(
            Path(root), mode, verify, vocab_size=self.config.vocab_size, d_model=self.config.d_model
        )

    def fgram_input_embeddings(
        self, input_ids: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings of ``input_ids`` ``[B, T]`` with each position that ends an f-gram (matched
        on ``context``, ``[B, T']`` ending with ``input_ids``) replaced by its table row."""
        from olmo_scone.model import replace_embeddings

        x = self.model.transformer.wte(input_ids)
        rows = self.fgram_matcher.match_batch(context.cpu().numpy())[:, -input_ids.shape[1] :]
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
        fgram_context: Optional[torch.Tensor] = None,
    ):
        """hf_olmo's forward (its parameters spelled out: ``generate()`` checks its keyword arguments
        against them), with matched input embeddings replaced by their table rows; ``fgram_context``
        ([B, T'] ending with ``input_ids``) is what the f-grams are matched on (default: the input)."""
        if self.fgram_matcher is not None and input_ids is not None and inputs_embeds is None:
            context = input_ids if fgram_context is None else fgram_context
            inputs_embeds = self.fgram_input_embeddings(input_ids, context)
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

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, past_key_values=None, **kwargs
    ):
        inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, **kwargs
        )
        if self.fgram_matcher is not None and past_key_values:
            inputs["fgram_context"] = input_ids[:, -self.fgram_matcher.max_n :]
        return inputs
