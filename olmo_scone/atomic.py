"""Atomic writes: an artifact is either absent, the old version, or whole.

Every file or directory this project produces (token files, manifests, f-gram
vocabularies, tables, checkpoints) is written under a temporary name beside its
destination, flushed, and renamed into place. A kill at any moment therefore never
leaves a half-written artifact under the final name.

Temporary names are ``.<name>.tmp-<pid>-<8 random>`` (``.old-`` for a directory moved aside):
read from the right, such a name gives back exactly one ``<name>``, so the cleanup of one output's
leftovers (locking.py) can never match another output's, even when one name is the other's plus a
suffix (``f`` and ``f.safetensors``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]

_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[a-z0-9_]{8}")


def temporary_prefix(name: str, kind: str = "tmp") -> str:
    """``mkstemp``/``mkdtemp`` prefix of a temporary for output ``name`` (the 8 random characters follow)."""
    return f".{name}.{kind}-{os.getpid()}-"


def temporary_owner(entry_name: str) -> Optional[str]:
    """The output name a temporary belongs to (None if ``entry_name`` is not a temporary)."""
    m = _TEMPORARY.fullmatch(entry_name)
    return m.group("name") if m else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on clean exit, fsync and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), dir=path.parent)
    try:
        os.fchmod(
            fd, 0o666 & ~_umask()
        )  # mkstemp's 0600 would hide shared artifacts from the rest of a team
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``path`` on clean exit.

    With ``overwrite``, an existing ``path`` is moved aside first and deleted only
    after the new directory is in place, so there is no moment without a whole one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path.name), dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # as a plain mkdir would (mkdtemp makes 0700)
        yield tmp
        fsync_dir(tmp)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} appeared while it was being written")
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(src: PathLike, dst: PathLike) -> None:
    """Rename the whole directory ``src`` to ``dst``; an existing ``dst`` is moved aside first and
    deleted only once ``src`` is in its place, so there is no moment without a whole one."""
    src, dst = Path(src), Path(dst)
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=temporary_prefix(dst.name, "old"), dir=dst.parent))
        os.rmdir(old)
        os.replace(dst, old)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
