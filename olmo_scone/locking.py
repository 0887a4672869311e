"""One writer per output: an exclusive lock file beside what a job writes.

Two runs writing the same ``--out`` (or the same save_folder) would each report success while one
silently replaces the other's work; a ``--resume`` racing the orphaned ranks of a killed run would
interleave their checkpoints. Every job that writes an artifact therefore holds
``flock(LOCK_EX)`` on ``.<name>.lock`` beside it for as long as it runs. The kernel drops the lock
when the process dies however it dies, so a dead run never blocks the next one; the file itself
records who holds it (host, pid, command, start time) so a refusal can name the holder, and is
removed when the holder exits cleanly.

The lock is keyed on the output's real path (symlinks resolved), so a save_folder reached through
a link takes the same lock as the folder itself.

Holding the lock also means that any temporary sibling of the output (``.<name>.tmp-<pid>-<rand>``,
what atomic.py writes before its rename, and ``.<name>.old-<pid>-<rand>``) belongs to a run that
died before it could clean up: :class:`OutputLock` removes those on the way in, so a killed run
leaves nothing behind for longer than until the next run. The names are matched exactly
(atomic.temporary_owner), never by a glob that another output's temporaries could also match.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from .errors import DISK_FULL_ERRNOS, fail


def real_output(out: str | os.PathLike) -> Path:
    """``out`` with every symlink resolved (it need not exist yet): the one name of an output."""
    return Path(os.path.realpath(Path(out).expanduser()))


def lock_path(out: str | os.PathLike) -> Path:
    out = real_output(out)
    return out.with_name(f".{out.name}.lock")


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"pid {h['pid']} on {h['host']} since {h['since']} ({h['command']})"
    except (OSError, ValueError, KeyError):
        return "another process"


def remove_stale_temporaries(out: str | os.PathLike) -> list:
    """Remove the temporaries that runs writing ``out`` left when they were killed (call only while
    holding ``out``'s lock: then no live run owns them). Returns what was removed."""
    from .atomic import temporary_owner

    out = real_output(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for p in sorted(out.parent.iterdir()):
        if temporary_owner(p.name) != out.name:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class OutputLock:
    """An acquired lock on one output; released (and its file removed) by :meth:`release` or at exit."""

    def __init__(self, out: str | os.PathLike, what: str = "output"):
        self.path = lock_path(out)
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # a path component is a file, no permission, read-only disk
                if e.errno in DISK_FULL_ERRNOS:
                    raise  # run_cli's own line for a full disk
                fail(f"cannot write {what} {out}: {e.strerror or e} ({e.filename or self.path})")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                fail(
                    f"{what} {out} is being written by {_holder(self.path)}: wait for it to finish or stop it"
                )
            # the previous holder may have removed the file between our open and our lock: retry on the new one
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd: Optional[int] = fd
        self._owner = (
            os.getpid()
        )  # a forked child inherits the fd and the atexit hook, but must not release
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:200],
        }
        try:  # who holds it, for the next one's error message; a full disk must not stop us here
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        except OSError:
            pass
        atexit.register(self.release)
        remove_stale_temporaries(out)

    def release(self) -> None:
        if self._fd is None or os.getpid() != self._owner:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
