"""Re-run one study record's commands as written, into another run folder, and compare the
perplexities with the record's: the study's claim that a record reproduces exactly.

A record keeps its commands as they ran (relative paths, the default torchrun port). Only the run's
own folder is moved (``.../seed<N>/<run>`` and its ``-served`` artifact): the run would otherwise
be the recorded one, which the trainer leaves alone as finished. Data, tokenizer and f-grams are
the study's own inputs, read as they were.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Dict, List

from ..atomic import atomic_write_json
from ..errors import fail
from ..paths import REPO, git_commit
from .repro_seeds import CORPORA


def run_folder_of(commands: List[str]) -> str:
    """The ``save_folder=`` of a record's training command."""
    for c in commands:
        m = re.search(r"\bsave_folder=(\S+)", c)
        if m:
            return m.group(1)
    fail("the record's commands have no training command with save_folder=")


def moved_commands(commands: List[str], into: str) -> List[str]:
    """``commands`` with the run's folder (and every path under it or beside it with a suffix, as
    its ``-served`` artifact) moved to ``into``."""
    old = run_folder_of(commands)
    return [re.sub(rf"(?<![\w/.-]){re.escape(old)}(?=[-/\s]|$)", into, c) for c in commands]


def reproduce(record: Path, into: str, out: Path) -> Dict:
    """Run the moved commands one by one (from the repository root, as recorded) and write
    ``out``: both perplexities recorded and reproduced, and whether they are equal."""
    if not record.is_file():
        fail(f"record not found: {record}")
    r = json.loads(record.read_text())
    commands = moved_commands(r["commands"], into)
    if Path(REPO / into).exists():
        fail(f"{into} exists: reproduce into a folder no run has used")
    for c in commands:
        print(f"$ {c}", flush=True)
        if subprocess.run(["bash", "-c", c], cwd=REPO).returncode != 0:
            fail(f"the reproduction stopped at: {c}")
    got = {k: _perplexity(into, k) for k in CORPORA}
    result = {
        "record": str(record.relative_to(REPO)) if record.is_relative_to(REPO) else str(record),
        "record_commit": r.get("commit"),
        "commit": git_commit(short=True),
        "commands": commands,
        "recorded": {k: r[k] for k in CORPORA},
        "reproduced": got,
        "exact": all(got[k] == r[k] for k in CORPORA),
    }
    atomic_write_json(out, result)
    return result


def _perplexity(folder: str, corpus: str) -> float:
    path = REPO / folder / f"eval-{corpus}.json"
    if not path.is_file():
        fail(f"the reproduction wrote no {path}")
    return json.loads(path.read_text())["perplexity"]
