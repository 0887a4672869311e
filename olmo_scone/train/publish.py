"""Publishing a checkpoint only when every rank's files are whole, and finding one to resume from.

DeepSpeed 0.18's ``save_checkpoint`` writes ``latest`` from rank 0 before its closing barrier, that
is without waiting for the other ranks' optimizer shards: a kill at the wrong moment leaves
``latest`` naming a step whose ``zero_pp_rank_1_*`` file is half written, and the run cannot resume.
So the trainer owns publication instead (``save_latest=False``):

1. every rank saves into ``.stepN.partial`` (a name no reader takes for a checkpoint) and fsyncs
   the files it wrote;
2. the ranks exchange what they wrote (names and sizes) and whether it went well;
3. rank 0 checks that every rank's files are there at the reported sizes and are readable zip
   checkpoints, writes ``checkpoint.json`` (step, world size, files and sizes), renames the folder
   to ``stepN`` and only then replaces ``latest`` atomically.

A kill or a full disk at any point leaves the previous checkpoint and ``latest`` as they were; a
``.stepN.partial`` left behind is removed by the next launch (which holds the save_folder's lock).
On start, :func:`resumable_tag` takes ``latest`` only if it names a complete checkpoint, and
otherwise falls back to the newest complete one, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..atomic import atomic_write_json, atomic_write_text, fsync_dir
from ..errors import fail

#: written by rank 0 into a step folder before it is published: what "complete" means for it
CHECKPOINT_FILE = "checkpoint.json"
_STEP = re.compile(r"step(\d+)")
_STAGING = re.compile(r"\.step(\d+)\.partial")


def step_tag(step: int) -> str:
    return f"step{step}"


def staging_tag(step: int) -> str:
    """Where a step is written before it is published (hidden from readers and from pruning)."""
    return f".step{step}.partial"


def own_files(folder: Path, rank: int) -> List[Path]:
    """The files of a DeepSpeed checkpoint folder that ``rank`` wrote: its ZeRO optimizer partition
    (``zero_pp_rank_<rank>_*``) and, on rank 0, the model states (``mp_rank_*_model_states.pt``)."""
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.name.startswith(f"zero_pp_rank_{rank}_"):
            out.append(p)
        elif rank == 0 and not p.name.startswith("zero_pp_rank_"):
            out.append(p)
    return out


def fsync_files(paths: List[Path]) -> Dict[str, int]:
    """Flush each file to disk; returns ``{name: size}``."""
    sizes = {}
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            sizes[p.name] = os.fstat(fd).st_size
        finally:
            os.close(fd)
    return sizes


def incomplete(folder: Path, written: List[Dict[str, int]]) -> Optional[str]:
    """Why the staged checkpoint in ``folder`` is not whole, or None. ``written[r]``: what rank r
    reported writing (name -> size after fsync)."""
    from .checkpoint import check_pickle_file

    for rank, files in enumerate(written):
        if not files:
            return f"rank {rank} reported no files"
        for name, size in files.items():
            p = folder / name
            if not p.is_file():
                return f"{name} (rank {rank}) is missing"
            if p.stat().st_size != size:
                return f"{name} is {p.stat().st_size} bytes, rank {rank} wrote {size}"
    names = {n for files in written for n in files}
    if not any(n.endswith("_model_states.pt") for n in names):
        return "no model states were written"
    for name in sorted(names):
        if name.endswith(".pt"):
            check_pickle_file(folder / name)  # a whole zip with only allowed types in its pickle
    return None


def publish(save_folder: Path, step: int, world: int, written: List[Dict[str, int]]) -> None:
    """Rank 0: check the staged step, record what it holds, rename it into place, then point
    ``latest`` at it. Nothing here runs unless every rank reported success."""
    staged = save_folder / staging_tag(step)
    why = incomplete(staged, written)
    if why is not None:
        fail(
            f"checkpoint {step_tag(step)} in {save_folder} is not whole ({why}); it was not published"
        )
    files = {name: size for files in written for name, size in files.items()}
    atomic_write_json(
        staged / CHECKPOINT_FILE,
        {"step": step, "world_size": world, "files": files},
    )
    final = save_folder / step_tag(step)
    if final.exists():  # a step of an earlier attempt at this run (e.g. a kill after the rename)
        shutil.rmtree(final)
    os.replace(staged, final)
    fsync_dir(save_folder)
    atomic_write_text(save_folder / "latest", step_tag(step))


def remove_staging(save_folder: Path) -> List[str]:
    """Remove ``.stepN.partial`` folders: a dead save's leftovers (call while holding the lock)."""
    removed = []
    if save_folder.is_dir():
        for p in save_folder.iterdir():
            if _STAGING.fullmatch(p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def checkpoint_record(folder: Path, tag: str) -> Optional[dict]:
    """A step folder's ``checkpoint.json`` (None for a checkpoint saved before it existed)."""
    p = folder / tag / CHECKPOINT_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
        if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict):
            raise ValueError("no file list")
        return rec
    except (OSError, ValueError) as e:
        return {"unreadable": str(e)}


def why_not_complete(folder: Path, tag: str) -> Optional[str]:
    """Why ``folder/tag`` cannot be resumed from (missing, a file short or absent), or None."""
    from .checkpoint import check_checkpoint

    d = folder / tag
    if not tag or "/" in tag or tag in (".", "..") or not d.is_dir():
        return f"{tag!r} is not a checkpoint folder"
    rec = checkpoint_record(folder, tag)
    if rec is None:  # an older checkpoint: every .pt file must be a whole, safe pickle
        check_checkpoint(folder, tag)
        return None
    if "unreadable" in rec:
        return f"its {CHECKPOINT_FILE} is unreadable ({rec['unreadable']})"
    for name, size in rec["files"].items():
        p = d / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != size:
            return f"{name} is {p.stat().st_size} bytes, {size} were written"
    return None


def published_steps(folder: Path) -> List[Tuple[int, str]]:
    """``(step, tag)`` of every ``stepN`` folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in folder.iterdir() if (m := _STEP.fullmatch(p.name))]
    return sorted(t for t in found if (folder / t[1]).is_dir())


def read_latest(folder: Path) -> Optional[str]:
    p = folder / "latest"
    if not p.is_file():
        return None
    try:
        return p.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def resumable_tag(folder: Path) -> Tuple[Optional[str], str]:
    """(the tag to resume from, a note when it is not the one ``latest`` names). ``latest``'s tag if
    that checkpoint is complete; else the newest complete ``stepN``; None if there is none."""
    folder = Path(folder)
    named = read_latest(folder)
    if named:
        why = _safe_why(folder, named)
        if why is None:
            return named, ""
    else:
        why = "'latest' is missing or empty" if named is not None else None
    for _, tag in reversed(published_steps(folder)):
        if tag != named and _safe_why(folder, tag) is None:
            if why is None:  # no 'latest' at all (a kill between the rename and its write)
                return (
                    tag,
                    f"{folder}: no 'latest'; resuming from the newest complete checkpoint {tag}",
                )
            return tag, (
                f"{folder}: 'latest' names {named or '(nothing)'}, which is not whole ({why}); "
                f"falling back to the newest complete checkpoint {tag}"
            )
    if why is None:
        return None, ""
    return None, (
        f"{folder}: 'latest' names {named or '(nothing)'}, which is not whole ({why}), and no "
        "earlier complete checkpoint exists"
    )


def _safe_why(folder: Path, tag: str) -> Optional[str]:
    """:func:`why_not_complete`, with a refused pickle reported as a reason instead of raised."""
    from ..errors import SconeError

    try:
        return why_not_complete(folder, tag)
    except SconeError as e:
        return str(e)


def checkpoint_world_size(folder: Path, tag: str) -> int:
    """How many ranks wrote ``folder/tag``: recorded in checkpoint.json, else its optimizer partitions."""
    rec = checkpoint_record(folder, tag)
    if rec and isinstance(rec.get("world_size"), int):
        return rec["world_size"]
    return max(1, len(list((folder / tag).glob("zero_pp_rank_*_optim_states.pt"))))
