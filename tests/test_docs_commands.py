"""The commands the README and docs mark as runnable after ``make demo`` (an HTML comment
``<!-- runnable after make demo ... -->`` above the fenced block) run as written: statically in
``make test`` (every script exists and takes every flag used), for real in CI (``make demo`` in a
copy of the checkout, then every block)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- runnable after make demo"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def runnable_blocks(paths=DOCS):
    """``(file name, language, text)`` of every marked fenced block."""
    out = []
    for path in paths:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(MARK) and i + 1 < len(lines) and lines[i + 1].startswith("```"):
                lang = lines[i + 1][3:].strip()
                end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
                out.append((path.name, lang, "\n".join(lines[i + 2 : end])))
    return out


def script_calls(block: str):
    """``(script, [flags])`` of every ``scripts/*.py`` command of a bash block."""
    text = block.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("  #")[0]
        if line.lstrip().startswith("#"):
            continue
        for part in line.split("|"):
            try:
                words = shlex.split(part)
            except ValueError:  # a line inside a multi-line quoted argument (python -c "...")
                continue
            scripts = [w for w in words if re.fullmatch(r"scripts/\w+\.py", w)]
            if scripts:
                yield scripts[0], [w.split("=")[0] for w in words if w.startswith("--")]


def test_the_marked_blocks_name_existing_scripts_and_flags():
    blocks = runnable_blocks()
    assert {name for name, _, _ in blocks} >= {"README.md", "serving.md"}
    calls = [c for _, lang, b in blocks if lang == "bash" for c in script_calls(b)]
    assert len(calls) >= 6
    for script, _ in calls:
        assert (REPO / script).is_file(), script
    # every script's --help at once (each is seconds of imports)
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(REPO / script), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        for script in {script for script, _ in calls}
    }
    helps = {script: proc.communicate(timeout=300)[0] for script, proc in procs.items()}
    for script, flags in calls:
        for flag in flags:
            assert re.search(rf"{re.escape(flag)}\b", helps[script]), (script, flag)


def test_the_block_reader_finds_marked_blocks_only(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        f"{MARK} -->\n```bash\n.venv/bin/python scripts/generate.py D --seed 1  # c\n```\n"
        "```bash\n.venv/bin/python scripts/evaluate.py D\n```\n"
    )
    blocks = runnable_blocks([doc])
    assert [lang for _, lang, _ in blocks] == ["bash"]
    assert list(script_calls(blocks[0][2])) == [("scripts/generate.py", ["--seed"])]


@pytest.mark.e2e
def test_the_marked_blocks_run_after_make_demo(tmp_path):
    """A copy of the checkout (tracked and untracked files git does not ignore), its ../shared
    and .venv linked, ``make demo`` (shortened), then every marked block as written."""
    root = tmp_path / "main"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(src.read_bytes())
    (root / ".venv").symlink_to(REPO / ".venv")
    shared = REPO.parent / "shared"
    if shared.exists():
        (tmp_path / "shared").symlink_to(shared.resolve())
    demo = subprocess.run(
        ["make", "demo", "DEMO_STEPS=20", "DEMO_FGRAMS=20000"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=1800,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    for name, lang, block in runnable_blocks(
        [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    ):
        cmd = (
            ["bash", "-euo", "pipefail", "-c", block]
            if lang == "bash"
            else [".venv/bin/python", "-c", block]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=1200)
        assert proc.returncode == 0, (name, block[:200], proc.stderr[-3000:])
