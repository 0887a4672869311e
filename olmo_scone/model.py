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

Nothing sized by the f-gram count S lives on the accelerator: the vocabulary stays on the host,
and each batch brings its own :class:`~.fgrams.batch.FgramBatch` (its unique f-grams' tokens and
lengths, and where each matched position's f-gram is), built on the host from the training sidecar
or, when a batch comes without one (``match=True``), from the host matcher (numpy, the serving
runtime's). The device holds the main model, ``A_fgram`` and per-batch tensors only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from olmo.model import BufferCache, Dropout, LayerNorm, OLMo, OLMoBlock, OLMoOutput

from .config import SconeModelConfig
from .errors import fail
from .fgrams.batch import FgramBatch, fgram_batch
from .fgrams.vocab import FgramVocab


def replace_embeddings(
    x: torch.Tensor, matched: torch.Tensor, unique_emb: torch.Tensor, inverse: torch.Tensor
) -> torch.Tensor:
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
    def __init__(
        self,
        config: SconeModelConfig,
        fgram_vocab: Optional[FgramVocab] = None,
        init_params: bool = True,
    ):
        super().__init__(config, init_params=init_params)
        self.fgram_model: Optional[FgramModel] = None
        self.fgram_table: Optional[torch.Tensor] = (
            None  # [S, d]: inference from precomputed embeddings
        )
        self.fgram_vocab_sha256: Optional[str] = None
        self._vocab: Optional[FgramVocab] = (
            None  # host memory (or memory-mapped): never moved to the device
        )
        self._matcher = None  # host (numpy) matcher, built on first use
        f = config.fgram
        if not f.enabled and fgram_vocab is None:
            return
        if fgram_vocab is None and f.vocab_path is not None:
            from .fgrams.vocab import load_vocab

            fgram_vocab = load_vocab(f.vocab_path)
        if fgram_vocab is not None:
            if fgram_vocab.max_n != f.max_n:
                fail(
                    f"fgram.max_n is {f.max_n} but the f-gram vocabulary has K = {fgram_vocab.max_n}"
                )
            if f.num_fgrams is not None and f.num_fgrams != len(fgram_vocab):
                fail(
                    f"fgram.num_fgrams is {f.num_fgrams} but the vocabulary has {len(fgram_vocab)} rows"
                )
            f.num_fgrams = len(fgram_vocab)
            if len(fgram_vocab) and int(fgram_vocab.tokens.max()) >= config.vocab_size:
                fail(
                    f"the f-gram vocabulary holds token id {int(fgram_vocab.tokens.max())} >= vocab_size {config.vocab_size}"
                )
            self.fgram_vocab_sha256 = fgram_vocab.sha256
            self._vocab = fgram_vocab
        self.fgram_model = FgramModel(config)

    # ---- f-gram rows (host) -----------------------------------------------------------
    def host_matcher(self):
        """The numpy matcher over this model's vocabulary (the one serving uses), built once."""
        if self._matcher is None:
            from .fgrams.matching import FgramMatcher

            self._matcher = FgramMatcher(self._vocab, self.config.vocab_size)
        return self._matcher

    def match_fgrams(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Rows of the longest f-gram ending at each position of ``input_ids`` (-1: none), matched on
        the host within each sequence, returned on ``input_ids``'s device."""
        if self._vocab is None:
            return torch.full_like(input_ids, -1)
        return torch.from_numpy(self._host_rows(input_ids)).to(input_ids.device)

    def _host_rows(self, input_ids: torch.Tensor) -> np.ndarray:
        return self.host_matcher().match_batch(input_ids.detach().cpu().numpy())

    def fgram_batch(
        self, input_ids: torch.Tensor, fgram_rows: Optional[torch.Tensor] = None
    ) -> Optional[FgramBatch]:
        """The per-batch f-gram tensors (host-built, then moved to ``input_ids``'s device) from given
        rows, or from host matching when none are given."""
        if self._vocab is None:
            return None
        rows = (
            fgram_rows.detach().cpu().numpy()
            if fgram_rows is not None
            else self._host_rows(input_ids)
        )
        return fgram_batch(rows, self._vocab).to(input_ids.device)

    # ---- embeddings ---------------------------------------------------------------------
    def fgram_embeddings(self, b: FgramBatch) -> torch.Tensor:
        """Embeddings ``[U, d]`` of a batch's unique f-grams: from the table if one is set, else ``A_fgram``."""
        if self.fgram_table is not None:
            return self.fgram_table[b.rows.to(self.fgram_table.device)].to(
                self.transformer.wte.weight.device
            )
        if self.fgram_model is None:
            fail("this model has no f-gram branch (fgram.vocab_path is not set)")
        return self.fgram_model(self.transformer.wte(b.tokens), b.lengths)

    def input_embeddings(self, input_ids: torch.Tensor, b: Optional[FgramBatch]) -> torch.Tensor:
        x = self.transformer.wte(input_ids)
        if (
            b is None
            or b.num_unique == 0
            or (self.fgram_model is None and self.fgram_table is None)
        ):
            return x
        return replace_embeddings(x, b.matched, self.fgram_embeddings(b), b.inverse)

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor,
        input_embeddings: Optional[torch.FloatTensor] = None,
        fgram_batch: Optional[FgramBatch] = None,
        fgram_rows: Optional[torch.Tensor] = None,
        match: bool = False,
        **kwargs,
    ) -> OLMoOutput:
        """OLMo's forward; SCONE is on with ``fgram_batch`` (the trainer's host-built batch),
        ``fgram_rows`` (rows per position, turned into a batch on the host) or ``match=True`` (matched
        on the host within each sequence, as the serving runtime does)."""
        if input_embeddings is None and fgram_batch is None and (fgram_rows is not None or match):
            fgram_batch = self.fgram_batch(input_ids, fgram_rows)
        if input_embeddings is None and fgram_batch is not None:
            input_embeddings = self.input_embeddings(input_ids, fgram_batch)
        return super().forward(input_ids, input_embeddings=input_embeddings, **kwargs)

    # ---- inference from a table ---------------------------------------------------------
    @torch.no_grad()
    def compute_fgram_table(
        self,
        batch_size: int = 4096,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
        start: int = 0,
        stop: Optional[int] = None,
    ) -> torch.Tensor:
        """Run ``A_fgram`` once over f-gram rows ``start:stop`` (default all): rows of the ``[S, d]``
        table that replaces it at inference."""
        if self.fgram_model is None:
            fail("this model has no f-gram branch")
        if self._vocab is None:
            fail("this model has no f-gram vocabulary")
        stop = len(self._vocab) if stop is None else stop
        device = self.transformer.wte.weight.device
        out = torch.empty((stop - start, self.config.d_model), dtype=dtype)
        starts = range(start, stop, batch_size)
        if progress:
            from .progress import progress as bar

            starts = bar(starts, desc="A_fgram over all f-grams", unit="batch")
        was_training = self.training
        self.eval()
        for i in starts:
            rows = np.arange(i, min(stop, i + batch_size))
            b = fgram_batch(rows[None], self._vocab).to(device)  # every row once, in order
            out[i - start : i - start + len(rows)] = self.fgram_embeddings(b).to("cpu", dtype)
        self.train(was_training)
        return out

    def use_fgram_table(
        self, table: Optional[torch.Tensor], drop_fgram_model: bool = False
    ) -> None:
        """Serve f-gram embeddings from ``table`` (``[S, d]``, any device); optionally drop ``A_fgram``."""
        if table is not None:
            s = self.config.fgram.num_fgrams
            if (
                table.ndim != 2
                or table.shape[1] != self.config.d_model
                or (s is not None and table.shape[0] != s)
            ):
                fail(
                    f"f-gram table of shape {tuple(table.shape)} does not fit this model ([{s}, {self.config.d_model}])"
                )
        self.fgram_table = table
        if drop_fgram_model:
            self.fgram_model = None
