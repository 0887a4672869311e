"""User-facing errors and the one place that turns them into a clean exit.

Anything a user can cause (a missing file, a bad config key, a corpus with no text)
raises :class:`SconeError` with a message that names the problem and, where there is
one, the fix. Entry points wrap ``main`` in :func:`run_cli`, which prints that message
on one line and exits non-zero, instead of a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence


class SconeError(Exception):
    """An error caused by the user's input, with a message meant to be read by them."""


def fail(message: str) -> NoReturn:
    raise SconeError(message)


#: errnos that mean the disk (or the user's quota) is full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: free bytes under which a failed or stalled write is taken to be a full disk
DISK_FULL_BYTES = 1 << 20


def full_disk(e: BaseException, where) -> bool:
    """Whether ``e`` (raised while writing under ``where``) is a full disk. ENOSPC says so itself;
    numpy's ``tofile`` ("N requested and M written") and ``torch.save`` ("iostream error") do not,
    so for those the filesystem is asked how much room is left."""
    import shutil

    if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
        return True
    if not isinstance(e, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(where).free < DISK_FULL_BYTES
    except OSError:
        return False


def _close_progress_bars() -> None:
    """End any live progress bar's line, so the error line starts a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def run_cli(
    main: Callable[[Optional[Sequence[str]]], int | None], argv: Optional[Sequence[str]] = None
) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 on a :class:`SconeError` or a full disk, 130 on
    Ctrl-C. A full disk is an error line, not a traceback: every artifact is written to a temporary
    name and renamed (atomic.py), so the failed write leaves nothing behind."""
    try:
        code = main(argv)
    except SconeError as e:
        _close_progress_bars()
        print(f"error: {e}", file=sys.stderr)
        record_for_torchrun(f"error: {e}")
        sys.exit(2)
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        _close_progress_bars()
        where = f" writing {e.filename}" if e.filename else ""
        print(
            f"error: no space left on device{where}: free space or choose another output location "
            "(nothing half-written was kept)",
            file=sys.stderr,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


def record_for_torchrun(line: str) -> None:
    """Under torchrun, leave ``line`` in the worker's error file: the agent's failure report then
    ends with it (its "Root Cause" entry) instead of "To enable traceback see ..."."""
    import json
    import os
    import time

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as f:
            json.dump({"message": line, "timestamp": int(time.time())}, f)
    except OSError:
        pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse with this project's error convention: a bad flag or value is one ``error:`` line
    and exit 2 (through :func:`run_cli`), not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        raise SconeError(f"{self.prog}: {message} (see --help)")


def _number(
    kind: Callable[[str], Any], test: Callable[[Any], bool], what: str
) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        # NaN and infinity are never in range (an infinite --shard-gb or --memory-gb plans nonsense)
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {what}"
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "0 or more")
positive_float = _number(float, lambda v: v > 0, "positive")
non_negative_float = _number(float, lambda v: v >= 0, "0 or more")
unit_interval = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")
