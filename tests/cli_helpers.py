"""Running the project's scripts as a user would, and checking their errors."""

from __future__ import annotations

import re
import subprocess


def assert_clean_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit code 2, no traceback, exactly one ``error:`` line, and it matches ``pattern``."""
    assert proc.returncode == 2, (proc.stdout or "") + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]
