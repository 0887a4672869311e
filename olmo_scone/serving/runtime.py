"""A served SCONE model: main model on the device, f-gram table on the host, matching on the host.

Per forward pass the new tokens are matched against the f-gram vocabulary on the host (the numpy
matcher over each sequence), the matched rows are gathered from the table (RAM or memory-mapped)
and moved to the device as the input embeddings of those positions; ``A_fgram`` is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import SconeTrainConfig, load_config
from ..errors import fail
from .table import FgramTable, load_artifact_manifest


class ServedModel:
    def __init__(self, artifact: str | Path, mode: str = "ram", device: str = "cpu", verify: bool = True,
                 tokenizer_sha256: Optional[str] = None):  # fmt: skip
        from safetensors.torch import load_file

        from ..fgrams.matching import FgramMatcher
        from ..fgrams.vocab import load_vocab
        from ..model import SconeOLMo

        root = Path(artifact)
        m = load_artifact_manifest(root)
        cfg = load_config(SconeTrainConfig, root / "config.yaml")
        vocab = load_vocab(root / "fgrams.safetensors")
        if vocab.sha256 != m["vocab_sha256"]:
            fail(f"{root}: the f-gram vocabulary does not match the table's (sha256 {vocab.sha256[:12]} vs {m['vocab_sha256'][:12]})")
        if tokenizer_sha256 is not None and m["tokenizer_sha256"] != tokenizer_sha256:
            fail(f"{root}: the table was built for tokenizer sha256 {str(m['tokenizer_sha256'])[:12]}, the data uses {tokenizer_sha256[:12]}")
        if int(m["d_model"]) != cfg.model.d_model:
            fail(f"{root}: table d_model {m['d_model']} does not match the model's {cfg.model.d_model}")
        cfg.model.init_device = device
        cfg.model.fgram.vocab_path = None
        self.model = SconeOLMo(cfg.model, fgram_vocab=vocab)
        state = load_file(str(root / m["model_file"]))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fgram_model.") and k != "transformer.ff_out.weight"]
        if missing or unexpected:
            fail(f"{root}/{m['model_file']} does not fit the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.table = FgramTable(root, mode, verify)
        self.model.use_fgram_table(self.table, drop_fgram_model=True)
        self.model.eval()
        self.matcher = FgramMatcher(vocab, cfg.model.vocab_size)
        self.cfg, self.device = cfg, torch.device(device)

    def fgram_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.cpu().numpy()
        rows = np.stack([self.matcher.match(r)[0] for r in ids]).astype(np.int64)
        return torch.from_numpy(rows)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.fgram_rows(input_ids).to(self.device)
        return self.model(input_ids.to(self.device), fgram_rows=rows).logits

    @torch.no_grad()
    def step(self, seqs: torch.Tensor, past):
        """Next-token logits ``[B, V]`` and the new KV cache. With ``past``, only the last token of
        ``seqs`` is run (its f-gram matched from the last K tokens); without, the whole prefix."""
        k = self.matcher.max_n
        if past is None:
            rows = self.fgram_rows(seqs)
            out = self.model(seqs.to(self.device), fgram_rows=rows.to(self.device), use_cache=True)
        else:
            rows = self.fgram_rows(seqs[:, -k:])[:, -1:]
            out = self.model(seqs[:, -1:].to(self.device), fgram_rows=rows.to(self.device), past_key_values=past,
                             use_cache=True)  # fmt: skip
        return out.logits[:, -1], out.attn_key_values
