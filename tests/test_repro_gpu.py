"""make repro-gpu at toy size on the CPU: every stage runs, a slot's time limit loses nothing, equal
minutes become the planned number of steps, and the probe-then-continue run is the run that had been
planned with that length from the start."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kit_imports import logging_env, missing_on_the_node
from olmo_scone.plotting import read_metrics, train_loss
from olmo_scone.recipes.repro_gpu import BEGIN, RUNS, UNFINISHED, toy_budget

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _repro(prepared, wikitext, root: Path, *extra) -> subprocess.CompletedProcess:
    cmd = [str(REPO / "scripts" / "repro_gpu.sh"), "--toy", "--tokens", str(prepared.root)]
    cmd += ["--wikitext", str(wikitext), "--root", str(root), *extra]
    env = logging_env(root.parent / ("imports-report" if "--report" in extra else "imports"))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)


def test_toy_repro_gpu_end_to_end(prepared, wikitext_valid, tmp_path):
    root, doc = tmp_path / "repro", tmp_path / "results.md"
    wiki = tmp_path / "wiki.valid.tokens"  # its first 400 lines: the toy evaluates 4 batches
    wiki.write_text("\n".join(wikitext_valid.read_text().splitlines()[:400]) + "\n")
    wikitext_valid = wiki
    doc.write_text("# Results\n\nanalysis\n")
    # a job slot that ends at once: the first run trains its one step a launch, saves it and asks
    # to be run again
    first = _repro(prepared, wikitext_valid, root, "--slot-seconds", "1e-9", "--no-plot")
    assert first.returncode == UNFINISHED, first.stderr[-2000:]
    assert "stopped at its time limit; run the same command again" in first.stdout
    assert (root / RUNS[0] / "latest").read_text() == "step1"
    proc = _repro(prepared, wikitext_valid, root, "--doc", str(doc), "--no-plot")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Curves: not drawn here" in doc.read_text()  # as on a node without matplotlib
    # every process imported only what the kit or the GPU image provides (wandb is neither)
    assert missing_on_the_node(tmp_path / "imports") == set()
    # curves drawn afterwards where matplotlib is, from the run folders alone
    proc = _repro(prepared, wikitext_valid, root, "--doc", str(doc), "--report")
    assert proc.returncode == 0, proc.stderr[-3000:]

    b = toy_budget()
    text = doc.read_text()
    assert text.startswith("# Results\n\nanalysis\n") and BEGIN in text
    assert (tmp_path / "results-gpu-curves.png").stat().st_size > 1000
    for run in RUNS:
        plan = json.loads((root / f"{run}.plan.json").read_text())
        want = max(b.probe_steps, int(b.minutes * 60 * plan["probe_tokens_per_s"] / (b.batch * 64)))
        assert plan["steps"] == want and plan["tokens_per_step"] == b.batch * 64
        ms = read_metrics(root / run)
        assert [m["step"] for m in ms] == list(range(1, want + 1))
        assert json.loads((root / run / "finished.json").read_text())["step"] == want
        for corpus in ("wikitext103-valid", "held-out"):
            ppl = json.loads((root / run / f"eval-{corpus}.json").read_text())["perplexity"]
            assert f"{ppl:.2f}" in text
        assert f"| {run} " in text
    assert (root / "scone-gpt2-128m-1m-served" / "manifest.json").is_file()

    # the baseline's probe-then-continue curve equals one launch planned with its length
    steps = json.loads((root / "gpt2-128m.plan.json").read_text())["steps"]
    from olmo_scone.recipes.repro_gpu import Repro

    rp = Repro(tmp_path / "direct", prepared.root, wikitext_valid, b)
    args = [
        a.replace(str(rp.root), str(tmp_path / "direct")) for a in rp.train_args("gpt2-128m", ())
    ]
    assert rp.launch("gpt2-128m", args, steps)
    direct = [train_loss(m) for m in read_metrics(tmp_path / "direct" / "gpt2-128m")]
    assert direct == [train_loss(m) for m in read_metrics(root / "gpt2-128m")]

    # a finished study relaunched: nothing is trained, exported or evaluated again
    again = _repro(prepared, wikitext_valid, root)
    assert again.returncode == 0 and "scripts/train.py" not in again.stdout
    assert "evaluate.py" not in again.stdout and "export_embeddings.py" not in again.stdout
