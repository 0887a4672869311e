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

    @classmethod
    def from_checkpoint(cls, save_folder: str | Path, device: str = "cpu") -> "ServedModel":
        """A baseline OLMo checkpoint (a scripts/train.py save_folder), served the same way."""
        from ..export import load_trained_model

        cfg, model = load_trained_model(save_folder, device=device)
        if model.fgram_model is not None:
            fail(f"{save_folder} is a SCONE checkpoint: export it first (scripts/export_embeddings.py) and serve the artifact")
        self = cls.__new__(cls)
        self.model, self.table, self.matcher, self.cfg, self.device = model.eval(), None, None, cfg, torch.device(device)
        return self

    def fgram_rows(self, input_ids: torch.Tensor) -> Optional[torch.Tensor]:
        if self.matcher is None:
            return None
        ids = input_ids.cpu().numpy()
        rows = np.stack([self.matcher.match(r)[0] for r in ids]).astype(np.int64)
        return torch.from_numpy(rows)

    def _rows_on_device(self, input_ids: torch.Tensor) -> Optional[torch.Tensor]:
        rows = self.fgram_rows(input_ids)
        return None if rows is None else rows.to(self.device)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids.to(self.device), fgram_rows=self._rows_on_device(input_ids)).logits

    @torch.no_grad()
    def step(self, seqs: torch.Tensor, past):
        """Next-token logits ``[B, V]`` and the new KV cache. With ``past``, only the last token of
        ``seqs`` is run (its f-gram matched from the last K tokens); without, the whole prefix."""
        if past is None:
            out = self.model(seqs.to(self.device), fgram_rows=self._rows_on_device(seqs), use_cache=True)
        else:
            k = self.matcher.max_n if self.matcher is not None else 1
            rows = self._rows_on_device(seqs[:, -k:])
            rows = None if rows is None else rows[:, -1:]
            out = self.model(seqs[:, -1:].to(self.device), fgram_rows=rows, past_key_values=past, use_cache=True)
        return out.logits[:, -1], out.attn_key_values


def load_served(path: str | Path, mode: str = "ram", device: str = "cpu", verify: bool = True) -> ServedModel:
    """A serving artifact (exported SCONE model) or a baseline checkpoint, behind one interface."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return ServedModel(p, mode=mode, device=device, verify=verify)
    if (p / "config.yaml").is_file():
        return ServedModel.from_checkpoint(p, device=device)
    fail(f"{p} is neither a serving artifact (manifest.json) nor a training save_folder (config.yaml)")
