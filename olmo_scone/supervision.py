"""Processes that end together, and child processes that cannot hang a run.

* A rank dies with the torchrun agent that started it. torchrun starts each rank in a session of
  its own, so killing the agent (or its process group) would leave the ranks training
  unsupervised to the end, writing checkpoints that a ``--resume`` started meanwhile would race.
  :func:`die_with_parent` asks the kernel for SIGKILL when the parent dies (Linux
  ``PR_SET_PDEATHSIG``).
* A tool we run (``dolma tokens``) is watched (:func:`run_watched`): it runs in its own process
  group that dies with us, and when the disk it writes to is full, or it stops making progress,
  the whole group is killed and the run ends with one line. ``dolma tokens``'s workers deadlock on
  a full disk and its parent then waits forever.
"""

from __future__ import annotations

import collections
import ctypes
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .errors import DISK_FULL_BYTES, fail

_PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


def die_with_parent() -> bool:
    """Arrange for SIGKILL when the parent process dies; True if armed (Linux only)."""
    parent = os.getppid()
    if not _prctl_pdeathsig():
        return False
    if parent == 1 or os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return True


def die_with_torchrun_agent() -> None:
    """Under torchrun, arm :func:`die_with_parent` (a killed agent must not leave ranks running);
    elsewhere nothing (a plain ``python`` run may outlive the shell that started it)."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    _prctl_pdeathsig()


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_watched(
    cmd: Sequence[str],
    env: Dict[str, str],
    writes_to: Path,
    what: str,
    stall_s: float = 600.0,
    live: bool = False,
    disk_full_grace_s: float = 5.0,
) -> Tuple[int, List[str]]:
    """Run ``cmd`` and return (exit code, last lines of its output).

    Ends the run with one line (after killing the child's whole process group) when the
    filesystem of ``writes_to`` has under :data:`DISK_FULL_BYTES` free and the child has been
    silent for ``disk_full_grace_s``, or when for ``stall_s`` it has neither printed anything nor
    grown ``writes_to``."""
    tail: collections.deque[str] = collections.deque(maxlen=4000)
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_child_setup,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    last_activity, last_size = time.monotonic(), -1
    try:
        while True:
            ready = sel.select(timeout=1.0)
            if ready:
                chunk = proc.stdout.read(65536)
                if not chunk:  # EOF: the child closed its output
                    break
                text = chunk.decode("utf-8", errors="replace")
                tail.extend(text)
                if live:
                    sys.stderr.write(text)
                    sys.stderr.flush()
                last_activity = time.monotonic()
                continue
            if proc.poll() is not None:
                break
            silent = time.monotonic() - last_activity
            free = shutil.disk_usage(writes_to).free
            if free < DISK_FULL_BYTES and silent >= disk_full_grace_s:
                _kill_group(proc)
                fail(
                    f"no space left on device: {what} filled the filesystem of {writes_to} ({free:,} bytes free) "
                    "and stopped; free space or choose another output location (nothing was kept)"
                )
            size = _dir_bytes(writes_to)
            if size != last_size:
                last_size, last_activity = size, time.monotonic()
            elif silent >= stall_s:
                _kill_group(proc)
                fail(
                    f"{what} made no progress for {stall_s:.0f} s (no output, {writes_to} not growing) and was "
                    "stopped (nothing was kept)"
                )
    except BaseException:
        _kill_group(proc)
        raise
    proc.stdout.close()
    code = proc.wait()
    return code, "".join(tail).replace("\r", "\n").strip().splitlines()[-15:]
