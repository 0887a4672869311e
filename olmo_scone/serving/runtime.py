"""A served SCONE model: main model on the device, f-gram table on the host, matching on the host.

Per forward pass the new tokens are matched against the f-gram vocabulary on the host (the numpy
matcher over each sequence), the matched rows are gathered from the table (RAM or memory-mapped)
and moved to the device as the input embeddings of those positions; ``A_fgram`` is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple

import torch

from ..config import SconeTrainConfig, load_config
from ..errors import fail
from .fast_lookup import make_lookup
from .artifact import check_vocabulary, open_fgram_table
from .table import FgramTable, load_artifact_manifest


@dataclasses.dataclass
class PreparedBatch:
    """A batch ready for the model: token ids on the device and, for matched positions, the
    unique f-gram rows (``emb``), where each matched position's row is (``inverse``)."""

    ids_host: torch.Tensor
    ids: torch.Tensor
    matched: Optional[torch.Tensor]
    inverse: Optional[torch.Tensor]
    emb: Optional[torch.Tensor]
    ready: Optional["torch.cuda.Event"]


class ServedModel:
    def __init__(
        self,
        artifact: str | Path,
        mode: str = "ram",
        device: str = "cpu",
        verify: bool = True,
        tokenizer_sha256: Optional[str] = None,
    ):
        """Open a serving artifact. ``mode`` places the table *and* the matcher's index: in RAM, or
        memory-mapped from disk (then opening reads neither; lookups fault in what they touch).
        The vocabulary itself is not kept: serving needs only the index built from it."""
        from ..model import SconeOLMo

        from .manifest import verify_files

        root = Path(artifact)
        m = load_artifact_manifest(root)
        verify_files(root, m["files"], verify)  # config.yaml included: before anything is read
        cfg = load_config(SconeTrainConfig, root / "config.yaml")
        use_own_tokenizer(cfg, root, m.get("tokenizer_sha256"))
        check_vocabulary(root, m, verify)
        if tokenizer_sha256 is not None and m["tokenizer_sha256"] != tokenizer_sha256:
            fail(
                f"{root}: the table was built for tokenizer sha256 {str(m['tokenizer_sha256'])[:12]}, the data uses {tokenizer_sha256[:12]}"
            )
        table, matcher = open_fgram_table(
            root,
            mode,
            verify,
            vocab_size=cfg.model.vocab_size,
            d_model=cfg.model.d_model,
            manifest=m,
        )
        cfg.model.init_device = device
        cfg.model.fgram.vocab_path = None
        cfg.model.fgram.num_fgrams = int(m["rows"])
        model = SconeOLMo(cfg.model)
        state = _load_main_model(root, m)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [
            k
            for k in missing
            if not k.startswith("fgram_model.") and k != "transformer.ff_out.weight"
        ]
        if missing or unexpected:
            fail(
                f"{root}/{m['model_file']} does not fit the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        self._attach(model, cfg, device, table, matcher=matcher)

    @classmethod
    def from_checkpoint(cls, save_folder: str | Path, device: str = "cpu") -> "ServedModel":
        """A baseline OLMo checkpoint (a scripts/train.py save_folder), served the same way."""
        from ..train.checkpoint import load_trained_model

        cfg, model = load_trained_model(save_folder, device=device)
        if model.fgram_model is not None:
            fail(
                f"{save_folder} is a SCONE checkpoint: export it first (scripts/export_embeddings.py) and serve the artifact"
            )
        return cls.wrap(model, cfg, device)

    @classmethod
    def wrap(
        cls, model, cfg, device: str = "cpu", table: Optional[FgramTable] = None, vocab=None
    ) -> "ServedModel":
        """Serve an in-memory main model, with a table + vocabulary (SCONE) or without (baseline)."""
        self = cls.__new__(cls)
        self._attach(model, cfg, device, table, vocab)
        return self

    def _attach(
        self, model, cfg, device: str, table: Optional[FgramTable], vocab=None, matcher=None
    ) -> None:
        """The one place a served model is put together: A_fgram dropped, host matcher (given, or
        built from ``vocab``), CUDA copy stream."""
        from ..fgrams.matching import FgramMatcher

        self.model, self.cfg, self.device, self.table = (
            model.eval(),
            cfg,
            torch.device(device),
            table,
        )
        if matcher is None and table is not None:
            matcher = FgramMatcher(vocab, cfg.model.vocab_size)
        self.matcher = matcher
        # the per-step match and deduplication, compiled (serving/fast_lookup.py)
        self.lookup = make_lookup(matcher) if matcher is not None else None
        if table is not None:
            model.use_fgram_table(table, drop_fgram_model=True)
        cuda = self.device.type == "cuda"
        self._pin = cuda
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None

    # ---- host side: match, gather, copy (can run ahead of the model) -----------------
    def prepare(
        self, input_ids: torch.Tensor, context: Optional[torch.Tensor] = None
    ) -> PreparedBatch:
        """Everything the model needs for ``input_ids`` ``[B, T]``, already on (or on its way to) the device.

        ``context`` (``[B, T']`` ending with ``input_ids``) is what the f-grams are matched on; a
        decode step passes the last K tokens and feeds only the newest. On CUDA the gathered rows
        sit in pinned memory and are copied on a side stream; the batch carries the event the
        compute stream waits on, so the next batch's rows move while the model computes."""
        ids = input_ids.cpu()
        stream = self._copy_stream
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        matched = inverse = emb = None
        if self.matcher is not None:
            ctx_ids = ids if context is None else context.cpu()
            hit, uniq, inv = self.lookup.lookup(ctx_ids.numpy(), ids.shape[1])
            if len(uniq):
                buf = torch.empty(
                    (len(uniq), self.table.d_model),
                    dtype=self.table.transfer_dtype,
                    pin_memory=self._pin,
                )
                emb = self.table.gather(uniq, out=buf)
                matched, inverse = torch.from_numpy(hit), torch.from_numpy(inv.reshape(-1))
        with ctx:
            nb = stream is not None
            ids_dev = ids.to(self.device, non_blocking=nb)
            if emb is not None:
                matched = matched.to(self.device, non_blocking=nb)
                inverse = inverse.to(self.device, non_blocking=nb)
                emb = emb.to(self.device, non_blocking=nb)
            ready = None
            if stream is not None:
                ready = torch.cuda.Event()
                ready.record(stream)
        return PreparedBatch(ids, ids_dev, matched, inverse, emb, ready)

    # ---- device side ---------------------------------------------------------------
    @torch.no_grad()
    def forward_prepared(self, p: PreparedBatch, past=None, use_cache: bool = False):
        from ..model import replace_embeddings

        if p.ready is not None:
            torch.cuda.current_stream(self.device).wait_event(p.ready)
        x = None
        if p.emb is not None:
            x = replace_embeddings(self.model.transformer.wte(p.ids), p.matched, p.emb, p.inverse)
        return self.model(p.ids, input_embeddings=x, past_key_values=past, use_cache=use_cache)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.forward_prepared(self.prepare(input_ids)).logits

    def iter_logits(
        self, batches: Iterable[torch.Tensor], prefetch: bool = True
    ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """``(input_ids, logits)`` per batch; with ``prefetch`` a host thread matches, gathers and
        copies batch i+1 while the model computes batch i (evaluation, prefill of many prompts)."""
        it = iter(batches)
        if not prefetch:
            for ids in it:
                p = self.prepare(ids)
                yield p.ids_host, self.forward_prepared(p).logits
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgram-prefetch") as pool:
            first = next(it, None)
            if first is None:
                return
            pending = pool.submit(self.prepare, first)
            for ids in it:
                p = pending.result()
                pending = pool.submit(self.prepare, ids)
                yield p.ids_host, self.forward_prepared(p).logits
            p = pending.result()
            yield p.ids_host, self.forward_prepared(p).logits

    @torch.no_grad()
    def step(self, seqs: torch.Tensor, past):
        """Next-token logits ``[B, V]`` and the new KV cache. With ``past``, only the last token of
        ``seqs`` is run (its f-gram matched from the last K tokens); without, the whole prefix."""
        if past is None:
            p = self.prepare(seqs)
        else:
            k = self.matcher.max_n if self.matcher is not None else 1
            p = self.prepare(seqs[:, -1:], context=seqs[:, -k:])
        out = self.forward_prepared(p, past=past, use_cache=True)
        return out.logits[:, -1], out.attn_key_values


def use_own_tokenizer(cfg, root: Path, sha256: Optional[str]) -> None:
    """A tokenizer of one's own given by a path that is not on this machine: the exported folder's
    ``tokenizer.json`` (the same bytes: its sha256 is the one the manifest records) stands in."""
    from ..atomic import sha256_file
    from ..data.tokenizers import is_tokenizer_path

    ident = str(cfg.tokenizer.identifier)
    own = root / "tokenizer.json"
    if is_tokenizer_path(ident) and not Path(ident).is_file() and own.is_file():
        if sha256 is not None and sha256_file(own) != sha256:
            fail(f"{own} is not the tokenizer the artifact was made with (sha256 differs)")
        cfg.tokenizer.identifier = str(own)


def _load_main_model(root: Path, m: dict) -> dict:
    """The main model's weights, checked against the sha256 the manifest recorded (always: a
    corrupted model file would otherwise serve NaN losses with exit 0)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..atomic import sha256_file

    if "model_file" not in m or "model_sha256" not in m:
        fail(
            f"{root}/manifest.json lists no main model (model_file, model_sha256): a table-only artifact cannot be served"
        )
    path = root / m["model_file"]
    if not path.is_file():
        fail(f"main model missing: {path}")
    if sha256_file(path) != m["model_sha256"]:
        fail(
            f"{path} does not match the sha256 in the manifest: it is corrupt or from another export (re-export it)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        fail(f"{path} is unreadable ({e}); re-export it")


def load_served(
    path: str | Path, mode: str = "ram", device: str = "cpu", verify: bool = True
) -> ServedModel:
    """A serving artifact (exported SCONE model) or a baseline checkpoint, behind one interface."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return ServedModel(p, mode=mode, device=device, verify=verify)
    if (p / "config.yaml").is_file():
        return ServedModel.from_checkpoint(p, device=device)
    fail(
        f"{p} is neither a serving artifact (manifest.json) nor a training save_folder (config.yaml)"
    )
