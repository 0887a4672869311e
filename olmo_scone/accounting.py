"""Parameters, FLOPs and memory of OLMo and SCONE configurations, counted from real modules.

Models are built on the ``meta`` device (no memory, no initialisation), so the counts are
those of the modules that train and serve, not of a formula that could drift from them.

* **accelerator-resident parameters at inference**: the main model (token embeddings and
  output head included, once when tied); ``A_fgram`` is dropped after export.
* **training parameters**: main model + ``A_fgram``.
* **offloaded table**: S x d values at 16 bits, plus the matcher's index (its real size: the
  hash table of trie nodes, 16 bytes a slot at load <= 1/4, and 8 bytes a node).
* **accelerator bytes for the f-gram branch**: every parameter and buffer of the model outside the
  main transformer (``A_fgram``'s weights, and anything else a SCONE model would move to the
  device), as built by the same constructor a training run uses, plus the per-sequence bound of the
  host-built per-batch tensors (``fgrams/batch.py``). Nothing here depends on S: the vocabulary
  stays on the host.
* **forward FLOPs per token**: OLMo's own convention (``OLMo.num_fwd_flops``): 2 x non-embedding
  parameters + attention ``4 x n_layers x d x seq``. At inference SCONE adds nothing (a table
  lookup). At training, ``A_fgram`` runs on unique f-grams of up to K tokens; we report its
  upper bound per token: every position matched, no f-gram shared, K tokens each.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional

from .config import SconeModelConfig


@dataclasses.dataclass
class Accounting:
    name: str
    main_params: int  # accelerator-resident at inference
    main_non_embedding_params: int
    fgram_model_params: int  # A_fgram (training only)
    num_fgrams: int
    table_gb: float  # 16-bit values
    index_gb: float
    inference_fwd_flops_per_token: int
    training_fwd_flops_per_token: int  # upper bound with A_fgram
    fgram_device_bytes: int = 0  # parameters + buffers outside the main transformer (fp32 as built)
    fgram_batch_bytes_per_seq: int = 0  # bound of the per-batch f-gram tensors per sequence

    @property
    def training_params(self) -> int:
        return self.main_params + self.fgram_model_params

    def row(self) -> List[str]:
        table = f"{_gb(self.table_gb)} + {_gb(self.index_gb)}" if self.num_fgrams else "-"
        return [
            self.name,
            _count(self.main_params),
            _count(self.training_params),
            _count(self.fgram_model_params) if self.fgram_model_params else "-",
            _count(self.num_fgrams) if self.num_fgrams else "-",
            table,
            f"{self.inference_fwd_flops_per_token / 1e9:.3g}",
            f"{self.training_fwd_flops_per_token / 1e9:.3g}",
            (
                f"{self.fgram_device_bytes / 1e9:.3g} + {self.fgram_batch_bytes_per_seq / 1e6:.3g} MB/seq"
                if self.fgram_device_bytes
                else "-"
            ),
        ]


def _gb(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _count(n: int) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.4g}M"


HEADER = [
    "config",
    "inference params (accelerator)",
    "training params",
    "A_fgram params",
    "f-grams",
    "table + index GB (16-bit)",
    "inference GFLOPs/token (fwd)",
    "training GFLOPs/token (fwd, bound)",
    "accelerator GB, f-gram branch (fp32 weights + per-batch inputs)",
]


def index_bytes(num_nodes: int) -> int:
    """Bytes of the matcher's index for ``num_nodes`` trie nodes (see fgrams/hashindex.py)."""
    if num_nodes == 0:
        return 0
    slots = 1 << max(4, math.ceil(math.log2(num_nodes / 0.25)))
    return slots * 16 + num_nodes * 8


def fgram_branch_device_bytes(model) -> int:
    """Bytes of every parameter and buffer of ``model`` outside the main transformer: what a SCONE
    model moves to the device beyond its baseline (works on meta and real models alike)."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return sum(t.numel() * t.element_size() for n, t in named if not n.startswith("transformer."))


def account(
    config: SconeModelConfig, name: str = "", num_fgrams: Optional[int] = None
) -> Accounting:
    from .model import SconeOLMo

    cfg = dataclasses.replace(config, init_device="meta")
    f = cfg.fgram
    s = num_fgrams if num_fgrams is not None else (f.num_fgrams or 0)
    if f.vocab_path is not None and not s:
        from .fgrams.vocab import load_vocab

        s = len(load_vocab(f.vocab_path, verify=False))
    cfg = dataclasses.replace(
        cfg, fgram=dataclasses.replace(f, vocab_path=None, num_fgrams=s if s or f.enabled else None)
    )
    model = SconeOLMo(cfg, init_params=False)
    fgram_params = (
        sum(p.numel() for p in model.fgram_model.parameters())
        if model.fgram_model is not None
        else 0
    )
    main = [(n, p) for n, p in model.named_parameters() if not n.startswith("fgram_model.")]
    main_params = sum(p.numel() for _, p in main)
    # OLMo's convention: the embedding lookups (wte, wpe) cost no FLOPs
    non_emb = sum(p.numel() for n, p in main if ".wte." not in n and ".wpe." not in n)
    attn = cfg.n_layers * 4 * cfg.d_model * cfg.max_sequence_length
    inference = 2 * non_emb + attn
    training = inference
    if model.fgram_model is not None:
        fc = model.fgram_model.config
        fgram_non_emb = fgram_params - fc.max_sequence_length * fc.d_model  # its wpe is a lookup
        k = f.max_n
        training += k * (2 * fgram_non_emb) + fc.n_layers * 4 * fc.d_model * k * k
    from .fgrams.batch import per_sequence_bytes

    per_seq = (
        per_sequence_bytes(cfg.max_sequence_length, f.max_n) if model.fgram_model is not None else 0
    )
    return Accounting(
        name,
        main_params,
        non_emb,
        fgram_params,
        s,
        s * cfg.d_model * 2 / 1e9,
        index_bytes(s) / 1e9,
        inference,
        training,
        fgram_branch_device_bytes(model),
        per_seq,
    )


def training_flops_rates(config: SconeModelConfig, num_fgrams: Optional[int]) -> tuple:
    """``(per token, per f-gram run through A_fgram)`` training FLOPs, what
    ``throughput/total_training_Gflops`` adds up step by step. The main model's is OLMo's own
    (``OLMo.num_fwd_flops + num_bck_flops`` of the main model alone), so a baseline logs what
    OLMo's trainer would and runs overlay on one dashboard; A_fgram's is 3x its forward FLOPs per
    f-gram of K tokens (:func:`account`)."""
    from olmo.model import OLMo

    main = OLMo(dataclasses.replace(config, init_device="meta"), init_params=False)
    a = account(config, num_fgrams=num_fgrams)
    per_fgram = a.training_fwd_flops_per_token - a.inference_fwd_flops_per_token
    return main.num_fwd_flops + main.num_bck_flops, 3 * per_fgram


def summary_table(rows: List[Accounting]) -> str:
    from .markdown import table

    return table([r.row() for r in rows], HEADER)


def to_dict(a: Accounting) -> Dict:
    d = dataclasses.asdict(a)
    d["training_params"] = a.training_params
    return d


# The paper's figures (Yu et al. 2025), for the check in scripts/model_summary.py and the tests.
PAPER_PARAMS = {"olmo-0.7b": 711e6, "olmo-1b": 1014e6, "olmo-1.3b": 1316e6, "olmo-1.9b": 1920e6}
PAPER_FGRAM_PARAMS = {"a0.6b": 0.6e9, "a1.8b": 1.8e9}
PAPER_TABLE_GB_10M = 41.4  # 10M f-grams, d = 2048, 16-bit, with its index


def paper_check(rows: List[Accounting]) -> List[str]:
    """Lines comparing our counts with the paper's, for every row the paper has a figure for."""
    out = []
    for r in rows:
        if r.name in PAPER_PARAMS:
            want = PAPER_PARAMS[r.name]
            out.append(
                f"{r.name}: {r.main_params / 1e6:,.1f}M parameters, paper {want / 1e6:,.0f}M "
                f"({100 * (r.main_params - want) / want:+.2f}%)"
            )
        for tag, want in PAPER_FGRAM_PARAMS.items():
            if r.name.endswith(tag) and r.fgram_model_params:
                out.append(
                    f"{r.name}: A_fgram {r.fgram_model_params / 1e9:.3f}B parameters, paper ~{want / 1e9:.1f}B"
                )
        if r.num_fgrams == 10_000_000:
            out.append(
                f"{r.name}: table {r.table_gb:.2f} GB + our index {r.index_gb:.2f} GB = "
                f"{r.table_gb + r.index_gb:.2f} GB; paper {PAPER_TABLE_GB_10M} GB with its index"
            )
    return out
