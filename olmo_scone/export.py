"""Export a trained SCONE checkpoint into a serving artifact: the f-gram table and the main model.

``scripts/export_embeddings.py SAVE_FOLDER --out DIR`` runs ``A_fgram`` once over every f-gram
(in batches, on the GPU when there is one) and writes::

    DIR/manifest.json            binds everything: tokenizer and vocabulary sha256, d_model, dtype,
                                 rows, shards (file, rows, sha256), model file sha256
    DIR/table-<i>.safetensors    the [S, d] table in shards of about --shard-gb (serving/table_format.py)
    DIR/fgrams.safetensors       the f-gram vocabulary (a copy)
    DIR/model.safetensors        the main model's weights, without A_fgram
    DIR/config.yaml              the training config
    DIR/vllm/                    the main model in GPT-2's layout, for vLLM (vllm_plugin/folder.py)

The export builds ``DIR.partial`` and renames it to ``DIR`` when complete. An interrupted export
re-run with the same arguments keeps the shards already in ``DIR.partial`` whose checksums verify
and computes only the rest, which matters for tables of hundreds of GB.

Across ranks (``torchrun --nproc_per_node=N scripts/export_embeddings.py ...``, every GPU of a node,
or gloo processes on CPU): shard ``i`` is computed and written by rank ``i mod N``; rank 0 writes the
main model, vocabulary and config, and, once every rank is done, the manifest, last. Shard layout,
row order and ``A_fgram`` batch boundaries (``--batch-size`` rows from each shard's start) do not
depend on N, so the table is the 1-rank export's (bit-identical at equal thread counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch

from .atomic import atomic_write_bytes, atomic_write_json, replace_directory, sha256_file
from .safetensors_bytes import safetensors_bytes
from .config import SconeTrainConfig, load_config
from .errors import ArgumentParser, SconeError, fail, full_disk, positive_float, positive_int
from .progress import progress
from .serving.manifest import list_files, seal
from .serving.table import table_disk_bytes
from .serving.table_format import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    DTYPES,
    bytes_per_row,
    quantize,
    read_shard,
    write_shard,
)
from .train.checkpoint import load_trained_model


def _shard_ranges(rows: int, dtype: str, d_model: int, shard_gb: float) -> list[Tuple[int, int]]:
    per = max(1, int(shard_gb * 1e9 // bytes_per_row(dtype, d_model)))
    return [(lo, min(rows, lo + per)) for lo in range(0, rows, per)] or [(0, 0)]


@dataclasses.dataclass
class Ranks:
    """This process's place in a multi-rank export (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Ranks":
        """Under torchrun (``WORLD_SIZE`` > 1): join the process group (NCCL on GPUs, gloo on CPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        from .supervision import die_with_torchrun_agent

        die_with_torchrun_agent()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def device(self) -> str:
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank)) % torch.cuda.device_count()}"


def export(
    save_folder: str | Path,
    out: str | Path,
    dtype: str = "bf16",
    shard_gb: float = 2.0,
    batch_size: int = 4096,
    overwrite: bool = False,
    tag: Optional[str] = None,
) -> dict:
    if dtype not in DTYPES:
        fail(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    from .outputs import refuse_foreign, refuse_overlap

    out = Path(out)
    refuse_overlap(out, {"the training run": save_folder})
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; an artifact is a directory")
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite to replace it")
    refuse_foreign(out, "an exported folder", is_export, "export_embeddings.py")
    ranks = Ranks.from_env()
    from .locking import OutputLock

    # one writer per output, the lock held by rank 0 for the whole job (DIR.partial is resumed, never shared)
    with OutputLock(out, "--out") if ranks.rank == 0 else contextlib.nullcontext():
        ranks.barrier()  # no rank writes before rank 0 holds the lock
        cfg, model = load_trained_model(save_folder, tag, ranks.device())
        if model.fgram_model is None:  # a baseline: its Hugging Face folder (main model only)
            return export_baseline(model, cfg, out, str(save_folder)) if ranks.rank == 0 else None
        return export_model(
            model,
            cfg,
            Path(save_folder) / "config.yaml",
            out,
            dtype,
            shard_gb,
            batch_size,
            str(save_folder),
            ranks,
        )


def is_export(folder: Path) -> bool:
    """Whether ``folder`` is what an export wrote: a serving artifact or a baseline's folder."""
    import json

    if (folder / "olmo_scone_export.json").is_file():
        return True
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == ARTIFACT_FORMAT


def export_model(
    model,
    cfg: SconeTrainConfig,
    config_path: Path,
    out: Path,
    dtype: str = "bf16",
    shard_gb: float = 2.0,
    batch_size: int = 4096,
    source: str = "",
    ranks: Optional[Ranks] = None,
) -> Optional[dict]:
    """Write the serving artifact of an in-memory model (see the module docstring); the manifest
    on rank 0, None on the other ranks."""
    if model.fgram_model is None or model._vocab is None:
        fail(f"{source} is a baseline model (no f-gram branch): nothing to export")
    main_state = main_model_state(model, cfg)

    def rows(lo: int, hi: int, advance: Callable[[int], object]) -> torch.Tensor:
        # A_fgram's batches start at the shard's start, as compute_fgram_table's own: the same bytes
        parts = []
        for a in range(lo, hi, batch_size):
            b = min(a + batch_size, hi)
            parts.append(model.compute_fgram_table(batch_size=batch_size, start=a, stop=b))
            advance(b - a)
        return torch.cat(parts)

    return write_artifact(
        Path(out),
        config_path,
        main_state,
        model._vocab,
        cfg.model.d_model,
        cfg.model.vocab_size,
        rows,
        dtype,
        shard_gb,
        source,
        ranks=ranks,
    )


def export_baseline(model, cfg: SconeTrainConfig, out: Path, source: str = "") -> dict:
    """A baseline save_folder as a folder that ``transformers`` opens like a SCONE one (no table):
    ``model.safetensors``, ``config.yaml``, the Hugging Face files (hf/folder.py), written to
    ``OUT.partial`` and renamed into place."""
    from omegaconf import OmegaConf

    from .atomic import atomic_write_text
    from .hf.folder import write_hf_files

    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    state = main_model_state(model, cfg)
    atomic_write_bytes(partial / "model.safetensors", safetensors_bytes(state, MAIN_MODEL_METADATA))
    atomic_write_text(partial / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    write_hf_files(partial, cfg, has_table=False)
    vllm = _vllm_folder(partial, cfg, state, None)
    info = {
        "kind": "baseline",
        "vllm": vllm,
        "source_checkpoint": source,
        "model_sha256": sha256_file(partial / "model.safetensors"),
        "files": list_files(partial),
    }
    info = seal(info)
    atomic_write_json(partial / "olmo_scone_export.json", info)  # last: the folder is whole
    replace_directory(partial, out)
    return info


def _vllm_folder(partial: Path, cfg: SconeTrainConfig, main_state: dict, vocab) -> Optional[str]:
    """The main model in GPT-2's layout for vLLM (vllm_plugin/folder.py): the folder's name, or
    None with one line saying why the model has none."""
    from .vllm_plugin.folder import FOLDER, write_vllm_folder

    max_n = vocab.max_n if vocab is not None else None
    why_not = write_vllm_folder(partial, cfg.model, main_state, vocab is not None, max_n)
    if why_not is not None:
        print(why_not, flush=True)
        return None
    return FOLDER


#: metadata of the main model's safetensors file: ``format: pt`` is what ``transformers`` requires
MAIN_MODEL_METADATA = {"format": "pt", "olmo_scone": "main-model"}


def main_model_state(model, cfg: SconeTrainConfig) -> dict:
    """The weights the accelerator keeps: everything but ``A_fgram`` (and the output head when it
    is tied to the token embeddings, which would be stored twice)."""
    state = {
        k: v.detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("fgram_model.")
    }
    if cfg.model.weight_tying:
        state.pop("transformer.ff_out.weight", None)
    return state


def write_artifact(
    out: Path,
    config_path: Optional[Path],
    main_state: Optional[dict],
    vocab,
    d_model: int,
    vocab_size: int,
    rows_fn: Callable[[int, int, Callable[[int], object]], torch.Tensor],
    dtype: str = "bf16",
    shard_gb: float = 2.0,
    source: str = "",
    num_rows: Optional[int] = None,
    ranks: Optional[Ranks] = None,
) -> Optional[dict]:
    """Write a serving artifact whose table rows ``[lo, hi)`` come from ``rows_fn(lo, hi, advance)``
    (``A_fgram`` in an export; synthetic rows in the inference benchmark), which calls
    ``advance(rows)`` as it goes: rank 0's progress bar counts rows, on a terminal or in a log. ``vocab``/``main_state``/``config_path``
    may be None for a table-only artifact (benchmarks of tables larger than any vocabulary here).
    Resumable: finished shards in ``DIR.partial`` that verify are kept. With several ``ranks``, each
    writes its own shards and rank 0 the rest; returns the manifest on rank 0, None elsewhere."""
    if dtype not in DTYPES:
        fail(f"table dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    ranks = ranks or Ranks()
    n = len(vocab) if vocab is not None else int(num_rows)
    partial = out.with_name(out.name + ".partial")
    if ranks.rank == 0:
        partial.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(partial)
    ranks.barrier()
    t0 = time.time()
    ranges = _shard_ranges(n, dtype, d_model, shard_gb)
    mine = [(i, lo, hi) for i, (lo, hi) in enumerate(ranges) if i % ranks.world == ranks.rank]
    bar = progress(
        total=sum(hi - lo for _, lo, hi in mine),
        desc=f"table rows ({len(mine)} shards)",
        unit="row",
        unit_scale=True,
        disable=ranks.rank != 0,
    )
    for i, lo, hi in mine:
        path = partial / _shard_name(i)
        if _finished_shard(path, dtype, lo, hi, d_model):
            bar.update(hi - lo)  # kept from an interrupted export
        else:
            rows = quantize(rows_fn(lo, hi, bar.update), dtype)
            _write_shard_or_explain(partial, path, rows, dtype, lo, hi, d_model)
    bar.close()
    ranks.barrier()  # every shard is on disk
    if ranks.rank != 0:
        return None
    shards = [
        {
            "file": _shard_name(i),
            "row_start": lo,
            "row_stop": hi,
            "sha256": _shard_sha256(partial / _shard_name(i)),
        }
        for i, (lo, hi) in enumerate(ranges)
    ]
    manifest = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "tokenizer_sha256": vocab.metadata.get("tokenizer_sha256") if vocab is not None else None,
        "vocab_sha256": vocab.sha256 if vocab is not None else None,
        "vocab_size": vocab_size,
        "d_model": d_model,
        "max_n": vocab.max_n if vocab is not None else None,
        "dtype": dtype,
        "rows": n,
        "shards": shards,
        "source_checkpoint": str(source),
        "export_ranks": ranks.world,
    }
    if main_state is not None:
        atomic_write_bytes(
            partial / "model.safetensors", safetensors_bytes(main_state, MAIN_MODEL_METADATA)
        )
        manifest.update(
            model_file="model.safetensors", model_sha256=sha256_file(partial / "model.safetensors")
        )
    if vocab is not None:
        from .fgrams.matching import FgramMatcher
        from .fgrams.vocab import save_vocab

        save_vocab(
            partial / "fgrams.safetensors",
            vocab.tokens,
            vocab.lengths,
            vocab.counts,
            vocab.metadata,
        )
        # the host matcher's index, so serving can memory-map it instead of rebuilding it in RAM
        manifest["matcher"] = {
            "folder": "matcher",
            **FgramMatcher(vocab, vocab_size).save(partial / "matcher"),
        }
    if config_path is not None:
        shutil.copyfile(config_path, partial / "config.yaml")
        if main_state is not None:  # what transformers' from_pretrained reads (hf/folder.py)
            from .hf.folder import write_hf_files

            cfg = load_config(SconeTrainConfig, config_path)
            write_hf_files(partial, cfg, has_table=True)
            manifest["vllm"] = _vllm_folder(partial, cfg, main_state, vocab)
    manifest["export_wall_time_s"] = round(time.time() - t0, 2)
    manifest["files"] = list_files(partial, skip=own_checksummed(manifest))
    manifest = seal(manifest)
    # last: its presence means the artifact is whole
    atomic_write_json(partial / "manifest.json", manifest)
    replace_directory(partial, out)
    return manifest


def own_checksummed(manifest: dict) -> list:
    """The artifact files whose content the manifest already binds with checksums of their own,
    checked by their loaders: the table shards, the matcher's arrays and the vocabulary. They grow
    with S (77 GB of index at 1B f-grams), so listing them again would read them twice at every open."""
    out = [s["file"] for s in manifest["shards"]]
    matcher = manifest.get("matcher")
    if matcher:
        out += [f"{matcher['folder']}/{f['file']}" for f in matcher["files"].values()]
    if manifest.get("vocab_sha256"):
        out.append("fgrams.safetensors")
    return out


def remove_dead_temporaries(partial: Path) -> None:
    """A killed export's half-written files in ``DIR.partial`` (hidden names: atomic.py's
    temporaries): removed before resuming, so none can reach the final artifact. Rank 0 holds the
    output's lock, so no live export owns them."""
    for p in partial.iterdir():
        if p.name.startswith("."):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _shard_name(i: int) -> str:
    return f"table-{i:05d}.safetensors"


def _finished_shard(path: Path, dtype: str, lo: int, hi: int, d_model: int) -> bool:
    """A shard left by an interrupted export, whole (its checksum verifies) and of the same rows/dtype."""
    if not path.is_file():
        return False
    try:
        _, meta = read_shard(path)
    except SconeError:  # a broken shard is recomputed
        return False
    return (meta["dtype"], int(meta["row_start"]), int(meta["row_stop"]), int(meta["d_model"])) == (
        dtype,
        lo,
        hi,
        d_model,
    )


def _shard_sha256(path: Path) -> str:
    """The checksum its writer recorded in the shard's header (verified by whoever reads it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {})["sha256"]


def _write_shard_or_explain(
    partial: Path, path: Path, tensors, dtype: str, lo: int, hi: int, d: int
) -> str:
    """Write one shard (atomically); a full disk is one line that says what is kept for resuming."""
    try:
        return write_shard(path, tensors, dtype, lo, hi, d)
    except OSError as e:
        if not full_disk(e, partial):
            raise
        done = len(list(partial.glob("table-*.safetensors")))
        fail(
            f"no space left on device writing {path.name}: the {done} finished shard(s) are kept in {partial}; "
            "free space and re-run the same command to resume"
        )


def main(argv=None) -> int:
    p = ArgumentParser(prog="export_embeddings.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "checkpoint", help="save_folder of a scripts/train.py run (its latest checkpoint)"
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the serving artifact's folder (written as OUT.partial, then renamed)",
    )
    p.add_argument("--tag", default=None, help="a checkpoint tag (e.g. step1000) instead of latest")
    p.add_argument(
        "--dtype",
        default="bf16",
        choices=DTYPES,
        help="dtype of the table rows (the main model stays in fp32)",
    )
    p.add_argument(
        "--shard-gb", type=positive_float, default=2.0, help="approximate size of a table shard"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=4096, help="f-grams per A_fgram batch"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing export at --out (never an input)",
    )
    a = p.parse_args(argv)
    m = export(a.checkpoint, a.out, a.dtype, a.shard_gb, a.batch_size, a.overwrite, a.tag)
    if m is None:  # not rank 0 of a multi-rank export: rank 0 reports
        return 0
    if m.get("kind") == "baseline":
        print(
            f"{a.checkpoint} is a baseline (no f-gram table): wrote its Hugging Face folder -> {a.out}"
        )
        return 0
    gb = table_disk_bytes(a.out, m) / 1e9
    rate = m["rows"] / max(m["export_wall_time_s"], 1e-9)
    print(
        f"exported {m['rows']:,} f-gram embeddings ({m['dtype']}, d={m['d_model']}) in {len(m['shards'])} shard(s) "
        f"on {m['export_ranks']} rank(s), {gb:.3f} GB, {m['export_wall_time_s']:.1f} s ({rate:,.0f} rows/s) -> {a.out}"
    )
    return 0
