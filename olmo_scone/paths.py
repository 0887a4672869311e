"""Where this checkout and the shared data live (``OLMO_SCONE_SHARED_DATA`` overrides the latter)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OLMO_SCONE_SHARED_DATA", REPO.parent / "shared" / "data"))


def git_commit(short: bool = False) -> Optional[str]:
    """This checkout's commit, for provenance in what a run writes (None outside a git checkout)."""
    cmd = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    except OSError:  # no git on this machine
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None
