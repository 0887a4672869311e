"""Training batches: OLMo memmap tokens plus the aligned f-gram sidecar, in a fixed order.

Instances are consecutive ``seq_len``-token chunks of each token file (the remainder of a file
is dropped, as OLMo's ``MemMapDataset`` does); the f-gram rows of an instance are the same slice
of the file's sidecar. The order of instances is a permutation drawn from ``seed + epoch``; the
global batch of step ``s`` is the next ``global_batch`` instances of it, and rank ``r`` of ``W``
takes the ``r``-th of ``W`` equal slices, cut into micro-batches. So the batch at any step depends
only on the seed, the global step and the world size: a resumed run sees exactly the batches an
uninterrupted run would have seen.

For a SCONE model the host builds each micro-batch's :class:`~..fgrams.batch.FgramBatch` here (the
unique f-grams' tokens and lengths, and where each matched position's f-gram is), so the device never
holds the vocabulary. The sidecar is tagged over whole files; at an instance's first K-1 positions
it could name an f-gram starting before the instance, which evaluation and serving never see, so
those positions are re-matched inside the instance (the sidecar's format and meaning are unchanged).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..data.sources import (
    FULL_CHECK_VALUES,
    TokenFiles,
    chunk_starts,
    open_token_files,
    open_token_paths,
)
from ..errors import fail
from ..fgrams.batch import fgram_batch, rows_in_instance
from ..fgrams.tagging import load_tags_manifest
from ..fgrams.vocab import FgramVocab


@dataclasses.dataclass
class _File:
    tokens: Path
    tags: Optional[Path]
    instances: int
    dtype: np.dtype


def train_token_files(cfg) -> TokenFiles:
    """The training token files of a config: ``data.tokens_dir`` (a prepare_data.py directory, its
    train split) or OLMo's ``data.paths`` (raw memmap files or globs; the tokenizer's dtype)."""
    from ..serving.cli import tokenizer_name

    if cfg.data.tokens_dir is not None and cfg.data.paths:
        fail(
            "set data.tokens_dir or data.paths, not both (override data.tokens_dir=null to train on data.paths)"
        )
    if cfg.data.paths:
        return open_token_paths([str(x) for x in cfg.data.paths], tokenizer_name(cfg))
    if cfg.data.tokens_dir is None:
        fail(
            "no training data: set data.tokens_dir (a directory made by scripts/prepare_data.py) or data.paths"
        )
    return open_token_files(str(cfg.data.tokens_dir), "train")


def _where(files: TokenFiles) -> str:
    return (
        str(files.root)
        if files.root is not None
        else f"{len(files.files)} token file(s) ({files.files[0].path.parent})"
    )


def check_sidecar(
    files: TokenFiles, tags_dir: Path, vocab_sha256: Optional[str], num_fgrams: Optional[int] = None
) -> Dict[str, Path]:
    """The sidecar file of every train token file, after checking the sidecar belongs to them
    (and, given the vocabulary's size, that every row is inside it)."""
    meta = load_tags_manifest(tags_dir)
    if meta.get("tokens_fingerprint") != files.fingerprint:
        fail(
            f"f-gram sidecar {tags_dir} was made from other token files than {_where(files)} "
            "(fingerprints differ); re-run scripts/tag_fgrams.py on these token files"
        )
    if vocab_sha256 is not None and meta.get("vocab_sha256") != vocab_sha256:
        fail(
            f"f-gram sidecar {tags_dir} was made with another f-gram vocabulary (sha256 "
            f"{str(meta.get('vocab_sha256'))[:12]}, model's {vocab_sha256[:12]}); re-run scripts/tag_fgrams.py"
        )
    by_tokens = {e["tokens"]: e for e in meta["files"]}
    out = {}
    for f in files.files:
        e = by_tokens.get(f.relpath)
        if e is None:
            fail(f"f-gram sidecar {tags_dir} has no entry for token file {f.relpath}")
        p = Path(tags_dir) / e["path"]
        if not p.is_file() or p.stat().st_size != 4 * f.length or e["positions"] != f.length:
            fail(
                f"f-gram sidecar file {p} is missing or does not have one entry per token of {f.relpath}"
            )
        out[f.relpath] = p
    if num_fgrams is not None:
        full = files.num_tokens <= FULL_CHECK_VALUES
        for p in out.values():
            check_sidecar_rows(p, num_fgrams, full)
    return out


def check_sidecar_rows(
    path: Path, num_fgrams: int, full: bool = True, chunk: int = 1 << 24
) -> None:
    """Every row of a sidecar file in [-1, S): a row past the vocabulary would be an IndexError
    mid-run. ``full``: every row; else sampled chunks (data/sources.py)."""
    rows = np.memmap(path, dtype=np.int32, mode="r")
    for lo in chunk_starts(len(rows), chunk, full):
        part = rows[lo : lo + chunk]
        if len(part) and (int(part.max()) >= num_fgrams or int(part.min()) < -1):
            fail(
                f"f-gram sidecar file {path} holds row {int(part.max()) if part.max() >= num_fgrams else int(part.min())}, "
                f"outside [-1, {num_fgrams}) of its vocabulary: it is corrupt; re-run scripts/tag_fgrams.py"
            )


class TrainBatches:
    def __init__(
        self,
        tokens: str | Path | TokenFiles,
        seq_len: int,
        global_batch: int,
        micro_batch: int,
        world_size: int,
        rank: int,
        seed: int,
        tags_dir: Optional[str | Path] = None,
        vocab: Optional[FgramVocab] = None,
    ):
        if global_batch % (micro_batch * world_size):
            fail(
                f"global_train_batch_size {global_batch} is not a multiple of device_train_microbatch_size "
                f"{micro_batch} x world size {world_size}"
            )
        self.tokens = (
            tokens if isinstance(tokens, TokenFiles) else open_token_files(str(tokens), "train")
        )
        self.seq_len, self.global_batch, self.micro_batch = seq_len, global_batch, micro_batch
        self.world_size, self.rank, self.seed = world_size, rank, seed
        if (tags_dir is None) != (vocab is None):
            fail(
                "a SCONE model's batches need both the f-gram sidecar (data.fgram_tags) and its vocabulary"
            )
        tags = (
            check_sidecar(self.tokens, Path(tags_dir), vocab.sha256) if tags_dir is not None else {}
        )
        self.vocab, self.tags_dir = vocab, Path(tags_dir) if tags_dir is not None else None
        self._matcher = None
        self.files: List[_File] = []
        for f in self.tokens.files:
            self.files.append(_File(f.path, tags.get(f.relpath), f.length // seq_len, f.dtype))
        self.offsets = np.cumsum([0] + [f.instances for f in self.files])
        if self.num_instances < global_batch:
            fail(
                f"{_where(self.tokens)} holds {self.num_instances} instances of {seq_len} tokens, fewer than one global batch "
                f"({global_batch})"
            )
        self._perm_epoch = -1
        self._perm = np.zeros(0, np.int64)
        self._mm: Dict[Path, np.memmap] = {}

    @property
    def num_instances(self) -> int:
        return int(self.offsets[-1])

    @property
    def steps_per_epoch(self) -> int:
        return self.num_instances // self.global_batch

    @property
    def grad_accum(self) -> int:
        return self.global_batch // (self.micro_batch * self.world_size)

    def global_indices(self, step: int) -> np.ndarray:
        """Instance indices of the whole global batch of ``step`` (0-based)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng(self.seed + epoch).permutation(self.num_instances)
            self._perm_epoch = epoch
        return self._perm[pos * self.global_batch : (pos + 1) * self.global_batch]

    def _read(self, path: Path, dtype, start: int) -> np.ndarray:
        mm = self._mm.get(path)
        if mm is None:
            mm = self._mm[path] = np.memmap(path, dtype=dtype, mode="r")
        return np.asarray(mm[start : start + self.seq_len])

    def instance(self, index: int) -> Dict[str, np.ndarray]:
        f = int(np.searchsorted(self.offsets, index, side="right") - 1)
        start = (index - int(self.offsets[f])) * self.seq_len
        item = {
            "input_ids": self._read(self.files[f].tokens, self.files[f].dtype, start).astype(
                np.int64
            )
        }
        # exact, per instance (a launch checks sampled chunks of files past FULL_CHECK_VALUES)
        limit = int(self.tokens.tokenizer["vocab_size"])
        if item["input_ids"].max() >= limit:
            fail(
                f"{self.files[f].tokens}: token id {int(item['input_ids'].max())} at tokens {start}..{start + self.seq_len} "
                f"is not below the tokenizer's vocabulary size {limit}: the file is corrupt"
            )
        if self.files[f].tags is not None:
            rows = self._read(self.files[f].tags, np.int32, start).astype(np.int64)
            if rows.max() >= len(self.vocab) or rows.min() < -1:
                fail(
                    f"f-gram sidecar file {self.files[f].tags} holds a row outside [-1, {len(self.vocab)}) at "
                    f"positions {start}..{start + self.seq_len}: it is corrupt; re-run scripts/tag_fgrams.py"
                )
            item["fgram_rows"] = rows_in_instance(
                rows, item["input_ids"], self.matcher, self.vocab.max_n
            )
        return item

    @property
    def matcher(self):
        """The host matcher (for the first K-1 positions of each instance, and the trainer's in-loop
        evaluation): the sidecar's saved index, memory-mapped, so the ranks of a node share one copy
        in the page cache (76.7 GB at 1B f-grams); built from the vocabulary for an older sidecar."""
        if self._matcher is None:
            from ..fgrams.matching import FgramMatcher
            from ..fgrams.tagging import load_tags_manifest

            saved = load_tags_manifest(self.tags_dir).get("matcher")
            if saved:
                self._matcher = FgramMatcher.load(
                    self.tags_dir / saved["folder"], saved, mmap=True, verify=False
                )
                if self._matcher.num_fgrams != len(self.vocab):
                    fail(
                        f"{self.tags_dir}: the saved matcher index has {self._matcher.num_fgrams} f-grams, the vocabulary {len(self.vocab)}"
                    )
            else:
                self._matcher = FgramMatcher(self.vocab, int(self.tokens.tokenizer["vocab_size"]))
        return self._matcher

    def micro_batches(self, step: int) -> List[Dict[str, torch.Tensor]]:
        """This rank's micro-batches of ``step``."""
        per_rank = self.global_batch // self.world_size
        mine = self.global_indices(step)[self.rank * per_rank : (self.rank + 1) * per_rank]
        out = []
        for i in range(0, per_rank, self.micro_batch):
            items = [self.instance(int(j)) for j in mine[i : i + self.micro_batch]]
            mb = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
            # what A_fgram needs for this micro-batch, built here on the host
            if self.vocab is not None:
                mb["fgram_batch"] = fgram_batch(mb["fgram_rows"], self.vocab)
            out.append(mb)
        return out
