"""What a command may write: never over one of its inputs, and ``--overwrite`` only over its own kind.

``export_embeddings.py RUN --out RUN --overwrite`` used to delete the training run it read,
``tag_fgrams.py --tokens D --out D --overwrite`` the token files, ``evaluate.py ART --out
ART/manifest.json`` the artifact's manifest. Every writer now calls :func:`refuse_overlap` with its
inputs before it does any work: an output that is, contains or lies inside an input (symlinks
resolved) is one error line, ``--overwrite`` or not. And :func:`refuse_foreign` keeps ``--overwrite``
to what the same tool wrote (its manifest or marker is there), never a folder of another kind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from .errors import fail
from .locking import real_output


def _relation(out: Path, inp: Path) -> Optional[str]:
    if out == inp:
        return "is"
    if inp in out.parents:
        return "lies inside"
    if out in inp.parents:
        return "contains"
    return None


def refuse_overlap(
    out: str | os.PathLike,
    inputs: Mapping[str, Optional[str | os.PathLike]],
    flag: str = "--out",
    new_file_inside: Sequence[str] = (),
) -> None:
    """Fail if ``out`` is, contains or lies inside any of ``inputs`` (``{what: path}``; None skipped).
    Paths are compared with every symlink resolved; a glob input is compared by its fixed prefix.
    ``new_file_inside`` names inputs inside which ``out`` may be a file that does not exist yet
    (evaluate.py's result beside a baseline's checkpoints, as the study records it: a new file
    written atomically deletes nothing; an existing one is refused by :func:`refuse_foreign`)."""
    o = real_output(out)
    for what, inp in inputs.items():
        if inp is None:
            continue
        i = real_output(_fixed_prefix(str(inp)))
        rel = _relation(o, i)
        if rel == "lies inside" and what in new_file_inside and not o.is_dir():
            continue
        if rel is not None:
            fail(
                f"{flag} {out} {rel} {what} {inp}: an output may not overlap an input (it could be "
                f"deleted or overwritten); choose another {flag}"
            )


def _fixed_prefix(spec: str) -> str:
    """The part of a path or glob before its first wildcard component (``d/train/*.npy`` -> ``d/train``)."""
    parts = Path(spec).parts
    for k, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return str(Path(*parts[:k])) if k else "."
    return spec


def refuse_foreign(
    out: str | os.PathLike, what: str, is_own: Callable[[Path], bool], tool: str
) -> None:
    """Before ``--overwrite`` replaces ``out``: fail unless it is absent, an empty folder, or
    something ``is_own`` recognises as ``tool``'s own output (``what`` names that kind)."""
    p = Path(out)
    if not p.exists() and not p.is_symlink():
        return
    if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
        return
    if is_own(p):
        return
    fail(
        f"{p} exists and is not {what}: --overwrite replaces only what {tool} wrote; "
        "choose another output or remove it yourself"
    )
