"""The SCONE model: OLMo whose input embedding is replaced, where an f-gram matches, by the
output of the f-gram model ``A_fgram`` (training) or by a precomputed table (inference).

* :class:`FgramModel` (``A_fgram``): OLMo blocks with no token-embedding table of their own.
  Its input is the *main model's* token embeddings of the f-gram's tokens plus its own learned
  positions (up to K); attention is causal, so with f-grams left-aligned and right-padded the
  output at the f-gram's last token depends on the f-gram alone.
* :class:`SconeOLMo`, a subclass of ``olmo.model.OLMo``: computes the input embeddings (token
  embedding where no f-gram matches; ``A_fgram``'s output where one does: replacement, as in the
  paper) and hands them to OLMo's own ``forward`` through ``input_embeddings``. Only the unique
  f-grams of a batch go through ``A_fgram``; results are scattered back. The output head is
  OLMo's, over the token vocabulary: the f-gram table is input-only.

Where f-gram rows come from: the training sidecar (``tag_fgrams.py``), or, when a batch comes
without them, the on-device matcher over the batch itself.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from olmo.model import BufferCache, Dropout, LayerNorm, OLMo, OLMoBlock, OLMoOutput

from .config import SconeModelConfig
from .errors import fail
from .fgrams.vocab import FgramVocab


def replace_embeddings(x: torch.Tensor, matched: torch.Tensor, unique_emb: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, T, d]`` token embeddings with every matched position replaced by its f-gram's
    embedding (``unique_emb[inverse]``, one row per matched position in row-major order): SCONE
    replaces the input embedding, it does not add to it. Shared by training and serving."""
    return x.masked_scatter(matched.unsqueeze(-1), unique_emb[inverse].to(x.dtype))


class FgramModel(nn.Module):
    """``A_fgram``: f-gram token embeddings (from the main model) -> one embedding per f-gram."""

    def __init__(self, config: SconeModelConfig):
        super().__init__()
        self.config = config.fgram_block_config()
        cfg = self.config
        self.wpe = nn.Embedding(cfg.max_sequence_length, cfg.d_model, device=cfg.init_device)
        self.emb_drop = Dropout(cfg.embedding_dropout)
        cache = BufferCache()
        self.blocks = nn.ModuleList([OLMoBlock.build(i, cfg, cache) for i in range(cfg.n_layers)])
        config.fgram.check()
        self.init = config.fgram.init
        # identity: no final LayerNorm, so the output stays on the token embeddings' scale
        self.ln_f = LayerNorm.build(cfg) if self.init == "olmo" else None
        if cfg.init_device != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        for block in self.blocks:
            block.reset_parameters()
        if self.init == "identity":
            # every block's residual branch starts at zero, and so do the positions: the output at
            # the last token is exactly that token's embedding until training moves it
            nn.init.zeros_(self.wpe.weight)
            for block in self.blocks:
                for out in (block.attn_out, block.ff_out):
                    nn.init.zeros_(out.weight)
                    if out.bias is not None:
                        nn.init.zeros_(out.bias)
        else:
            nn.init.normal_(self.wpe.weight, std=self.config.init_std)
            self.ln_f.reset_parameters()

    def forward(self, token_embeddings: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``token_embeddings`` ``[U, K, d]`` (left-aligned), ``lengths`` ``[U]`` -> ``[U, d]``."""
        u, k, _ = token_embeddings.shape
        pos = torch.arange(k, device=token_embeddings.device)
        x = self.emb_drop(token_embeddings + self.wpe(pos)[None])
        for block in self.blocks:
            x, _ = block(x)  # no attention bias: causal
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x[torch.arange(u, device=x.device), lengths.long() - 1]


class SconeOLMo(OLMo):
    def __init__(self, config: SconeModelConfig, fgram_vocab: Optional[FgramVocab] = None, init_params: bool = True):
        super().__init__(config, init_params=init_params)
        self.fgram_model: Optional[FgramModel] = None
        self.fgram_table: Optional[torch.Tensor] = None  # [S, d]: inference from precomputed embeddings
        self.fgram_vocab_sha256: Optional[str] = None
        self._vocab: Optional[FgramVocab] = None
        self._matcher = None
        f = config.fgram
        if not f.enabled and fgram_vocab is None:
            return
        if fgram_vocab is None and f.vocab_path is not None:
            from .fgrams.vocab import load_vocab

            fgram_vocab = load_vocab(f.vocab_path)
        if fgram_vocab is not None:
            if fgram_vocab.max_n != f.max_n:
                fail(f"fgram.max_n is {f.max_n} but the f-gram vocabulary has K = {fgram_vocab.max_n}")
            if f.num_fgrams is not None and f.num_fgrams != len(fgram_vocab):
                fail(f"fgram.num_fgrams is {f.num_fgrams} but the vocabulary has {len(fgram_vocab)} rows")
            f.num_fgrams = len(fgram_vocab)
            if len(fgram_vocab) and int(fgram_vocab.tokens.max()) >= config.vocab_size:
                fail(f"the f-gram vocabulary holds token id {int(fgram_vocab.tokens.max())} >= vocab_size {config.vocab_size}")
            tokens = torch.from_numpy(np.maximum(fgram_vocab.tokens, 0).astype(np.int64))
            lengths = torch.from_numpy(fgram_vocab.lengths.astype(np.int64))
            self.fgram_vocab_sha256 = fgram_vocab.sha256
            self._vocab = fgram_vocab
        else:  # sized only (accounting, meta device): no rows to look up
            tokens = torch.zeros((0, f.max_n), dtype=torch.long)
            lengths = torch.zeros(0, dtype=torch.long)
        device = None if config.init_device == "meta" else config.init_device
        self.register_buffer("fgram_tokens", tokens.to(device), persistent=False)
        self.register_buffer("fgram_lengths", lengths.to(device), persistent=False)
        self.fgram_model = FgramModel(config)

    # ---- f-gram rows -------------------------------------------------------------------
    def match_fgrams(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Rows of the longest f-gram ending at each position of ``input_ids`` (-1: none), on device."""
        if self._vocab is None:
            return torch.full_like(input_ids, -1)
        if self._matcher is None or self._matcher.node_row.device != input_ids.device:
            from .fgrams.matching import FgramMatcher

            self._matcher = FgramMatcher(self._vocab, self.config.vocab_size).to_torch(input_ids.device)
        rows, _ = self._matcher.match(input_ids)
        return rows

    # ---- embeddings ---------------------------------------------------------------------
    def fgram_embeddings(self, rows: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[len(rows), d]`` of f-gram rows: from the table if one is set, else ``A_fgram``."""
        if self.fgram_table is not None:
            return self.fgram_table[rows.to(self.fgram_table.device)].to(self.transformer.wte.weight.device)
        if self.fgram_model is None:
            fail("this model has no f-gram branch (fgram.vocab_path is not set)")
        toks = self.fgram_tokens[rows]
        return self.fgram_model(self.transformer.wte(toks), self.fgram_lengths[rows])

    def input_embeddings(self, input_ids: torch.Tensor, fgram_rows: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.transformer.wte(input_ids)
        if fgram_rows is None or (self.fgram_model is None and self.fgram_table is None):
            return x
        matched = fgram_rows >= 0
        if not bool(matched.any()):
            return x
        unique_rows, inverse = torch.unique(fgram_rows[matched], return_inverse=True)
        return replace_embeddings(x, matched, self.fgram_embeddings(unique_rows), inverse)

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor,
        input_embeddings: Optional[torch.FloatTensor] = None,
        fgram_rows: Optional[torch.Tensor] = None,
        match: bool = False,
        **kwargs,
    ) -> OLMoOutput:
        """OLMo's forward; ``fgram_rows`` (or ``match=True`` to match on the fly) switches SCONE on."""
        if input_embeddings is None and (fgram_rows is not None or match):
            if fgram_rows is None:
                fgram_rows = self.match_fgrams(input_ids)
            input_embeddings = self.input_embeddings(input_ids, fgram_rows)
        return super().forward(input_ids, input_embeddings=input_embeddings, **kwargs)

    # ---- inference from a table ---------------------------------------------------------
    @torch.no_grad()
    def compute_fgram_table(self, batch_size: int = 4096, dtype: torch.dtype = torch.float32, progress: bool = False,
                            start: int = 0, stop: Optional[int] = None) -> torch.Tensor:  # fmt: skip
        """Run ``A_fgram`` once over f-gram rows ``start:stop`` (default all): rows of the ``[S, d]``
        table that replaces it at inference."""
        if self.fgram_model is None:
            fail("this model has no f-gram branch")
        stop = self.fgram_tokens.shape[0] if stop is None else stop
        out = torch.empty((stop - start, self.config.d_model), dtype=dtype)
        starts = range(start, stop, batch_size)
        if progress:
            from .progress import progress as bar

            starts = bar(starts, desc="A_fgram over all f-grams", unit="batch")
        was_training = self.training
        self.eval()
        for i in starts:
            rows = torch.arange(i, min(stop, i + batch_size), device=self.fgram_tokens.device)
            out[i - start : i - start + len(rows)] = self.fgram_embeddings(rows).to("cpu", dtype)
        self.train(was_training)
        return out

    def use_fgram_table(self, table: Optional[torch.Tensor], drop_fgram_model: bool = False) -> None:
        """Serve f-gram embeddings from ``table`` (``[S, d]``, any device); optionally drop ``A_fgram``."""
        if table is not None:
            s = self.config.fgram.num_fgrams
            if table.ndim != 2 or table.shape[1] != self.config.d_model or (s is not None and table.shape[0] != s):
                fail(f"f-gram table of shape {tuple(table.shape)} does not fit this model ([{s}, {self.config.d_model}])")
        self.fgram_table = table
        if drop_fgram_model:
            self.fgram_model = None
