"""vLLM's GPT-2 with SCONE's input embeddings: at each new token whose longest f-gram matches,
the f-gram table's row replaces the token embedding (as the project's runtime does,
olmo_scone/serving/runtime.py), before vLLM's compiled GPT-2 blocks run.

Per forward pass, on the host: each new token's history comes from the KV-cache slots of its
request (serving/slot_history.py), the compiled lookup matches and deduplicates (serving/
fast_lookup.py), the unique rows are gathered from the table in RAM or memory-mapped
(serving/table.py) into a buffer that is pinned on CUDA and copied without blocking. Nothing sized
by the number of f-grams is on the accelerator. Works with continuous batching, chunked prefill,
preemption and prefix caching, because the history follows the engine's own KV layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vllm.config import VllmConfig
from vllm.forward_context import get_forward_context, is_forward_context_available
from vllm.model_executor.models.gpt2 import GPT2LMHeadModel

from ..serving.artifact import open_fgram_table
from ..serving.fast_lookup import make_lookup
from ..serving.manifest import verify_export_folder
from ..serving.slot_history import SlotTokenHistory


class SconeGPT2LMHeadModel(GPT2LMHeadModel):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if vllm_config.speculative_config is not None:
            raise ValueError(
                "olmo-scone: speculative decoding is not supported with an f-gram table"
            )
        _refuse_full_cuda_graphs(vllm_config)
        cfg = self.config
        root = (Path(vllm_config.model_config.model) / cfg.scone_artifact).resolve()
        mode, verify = str(cfg.scone_table), bool(cfg.scone_verify)
        # as the Hugging Face class opens a folder: every file first, then table, matcher and
        # vocabulary against the model
        verify_export_folder(root, verify)
        self.scone_table, matcher = open_fgram_table(
            root, mode, verify, vocab_size=int(cfg.scone_vocab_size), d_model=int(cfg.n_embd)
        )
        self.scone_lookup = make_lookup(matcher)
        self.scone_history = SlotTokenHistory(matcher.max_n)
        self.scone_block_size = int(vllm_config.cache_config.block_size)
        #: positions matched and f-gram rows gathered so far (for benchmarks and tests)
        self.scone_stats = {"tokens": 0, "matched": 0, "rows": 0}

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors=None,
        inputs_embeds: torch.Tensor | None = None,
    ):
        if inputs_embeds is None:
            inputs_embeds = self.embed_input_ids(input_ids)
            self._replace_matched(inputs_embeds, input_ids, positions)
        return self.transformer(None, positions, intermediate_tensors, inputs_embeds)

    def _attention_metadata(self):
        """The step's attention metadata (every GPT-2 layer shares one KV layout), or None in
        vLLM's profiling and warm-up runs, which have no requests."""
        if not is_forward_context_available():
            return None
        md = get_forward_context().attn_metadata
        if not md:
            return None
        if isinstance(md, list):
            raise NotImplementedError("olmo-scone: micro-batched (DBO) forward passes")
        return next(iter(md.values()))

    def _replace_matched(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor
    ) -> None:
        md = self._attention_metadata()
        if md is None:
            return
        n = int(md.num_actual_tokens)
        qsl = md.query_start_loc.cpu().numpy()
        # padded entries (CUDA graphs) repeat the token count
        num_reqs = int(np.searchsorted(qsl, n, side="left"))
        windows = self.scone_history.windows(
            input_ids[:n].cpu().numpy(),
            positions[:n].cpu().numpy(),
            qsl[: num_reqs + 1],
            md.block_table[:num_reqs].cpu().numpy(),
            md.slot_mapping[:n].cpu().numpy(),
            self.scone_block_size,
        )
        hit, uniq, inverse = self.scone_lookup.lookup_windows(windows)
        self.scone_stats["tokens"] += n
        self.scone_stats["matched"] += int(hit.sum())
        self.scone_stats["rows"] += len(uniq)
        if len(uniq):
            embeds[:n][self._to_device(np.flatnonzero(hit), embeds)] = self._rows(uniq, embeds)[
                self._to_device(inverse, embeds)
            ]

    def _rows(self, uniq: np.ndarray, embeds: torch.Tensor) -> torch.Tensor:
        """The table's rows, gathered on the host (into pinned memory on CUDA) and sent on."""
        pin = embeds.device.type == "cuda"
        buf = torch.empty(
            (len(uniq), self.scone_table.d_model),
            dtype=self.scone_table.transfer_dtype,
            pin_memory=pin,
        )
        rows = self.scone_table.gather(uniq, out=buf)
        return rows.to(embeds.device, non_blocking=pin).to(embeds.dtype)

    @staticmethod
    def _to_device(index: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
        return t.to(like.device, non_blocking=like.device.type == "cuda")


def _refuse_full_cuda_graphs(vllm_config: VllmConfig) -> None:
    """A full CUDA graph would replay the host lookup of the step it was captured on; piecewise
    graphs (the GPT-2 blocks only) or eager mode leave this forward's Python to run every step."""
    from vllm.platforms import current_platform

    mode = vllm_config.compilation_config.cudagraph_mode
    eager = vllm_config.model_config.enforce_eager
    if current_platform.is_cuda_alike() and not eager and mode is not None:
        if mode.has_full_cudagraphs():
            raise ValueError(
                "olmo-scone: the host f-gram lookup cannot run inside a full CUDA graph; start "
                """vLLM with --compilation-config '{"cudagraph_mode": "PIECEWISE"}' or --enforce-eager"""
            )


def served_stats(llm) -> Optional[dict]:
    """The plugin's counters from an offline ``vllm.LLM`` (None for a model without a table)."""
    out = llm.llm_engine.collective_rpc(_stats_of_worker)
    return out[0] if out else None


def _stats_of_worker(worker) -> Optional[dict]:
    model = worker.model_runner.get_model()
    return dict(model.scone_stats) if hasattr(model, "scone_stats") else None
