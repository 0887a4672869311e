"""How a driver starts ``torchrun`` on this machine.

One place for the two things every launcher here got separately: this environment's ``torchrun``
(the one beside the running Python, so a driver run from the venv never picks another install's) and
a TCP port nobody listens on now, so a test suite, a smoke run and a study can share one machine
without meeting at torchrun's default rendezvous port 29500.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import List


def free_port() -> int:
    """A localhost TCP port that was free a moment ago (the OS picks it; a race is unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_executable() -> str:
    """``torchrun`` beside this Python when there is one, else whichever is on ``PATH``."""
    beside = Path(sys.executable).parent / "torchrun"
    return str(beside) if beside.exists() else "torchrun"


def torchrun_command(nproc: int, *, own_port: bool = True) -> List[str]:
    """``torchrun --nproc_per_node=N`` on one node, on a free port unless ``own_port`` is False
    (a command recorded for people to copy, as the CPU study's are, keeps the default port)."""
    cmd = [torchrun_executable(), f"--nproc_per_node={nproc}"]
    return cmd + [f"--master_port={free_port()}"] if own_port else cmd
