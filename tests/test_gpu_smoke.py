"""scripts/gpu_smoke.sh: its CPU rehearsal runs every step of the GPU smoke on small models, and its
checks fail when the numbers disagree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kit_imports import imported_distributions, logging_env, missing_on_the_node
from olmo_scone.gpu_kit.smoke import LOSS_RTOL, SERVED_TOL, TABLE_TOL, checks, plan_for

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "scripts" / "gpu_smoke.sh")


@pytest.mark.slow
@pytest.mark.e2e
def test_cpu_rehearsal_runs_every_step_and_writes_its_report(prepared, tmp_path):
    out, log = tmp_path / "smoke", tmp_path / "imports"
    proc = subprocess.run(
        [SCRIPT, "--device", "cpu", "--tokens", str(prepared.root), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=logging_env(log),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every process of the run imported only what the kit or the GPU image provides
    assert len(list(log.glob("*.txt"))) >= 10
    assert {"torch", "deepspeed", "ai2-olmo", "omegaconf"} <= imported_distributions(log)
    assert missing_on_the_node(log) == set()
    res = json.loads((out / "gpu_smoke.json").read_text())
    plan = plan_for("cpu")
    assert set(res["models"]) == {m.name for m in plan.models}
    for name, r in res["models"].items():
        assert r["steps"] == plan.steps and r["all_finite"]
        # the same weights and batch, bf16 against fp32: close, not equal
        assert 0 < r["first_loss_rel_diff"] < LOSS_RTOL
        assert 9.0 < r["first_loss"] < 12.0  # ~ln(50K) at initialisation
        assert r["tokens_per_s"] > 0
    for name in ("tiny-scone", "scone-gpt2-128m-1m"):
        logits = res["models"][name]["logits"]
        assert set(logits) == {"cpu_ram_vs_cpu", "cpu_mmap_vs_cpu", "table_vs_live_a_fgram"}
        # served on the CPU twice: the same sums; the bf16 table against A_fgram live: close
        assert logits["cpu_ram_vs_cpu"] < 1e-6 and logits["cpu_mmap_vs_cpu"] < 1e-6
        assert 0 < logits["table_vs_live_a_fgram"] < TABLE_TOL
        assert (out / "served" / name / "manifest.json").is_file()
    assert [d["batch"] for d in res["decode"]] == list(plan.decode_batches)
    assert all(d["scone_ms"] > 0 and d["baseline_ms"] > 0 for d in res["decode"])
    assert all(res["checks"].values()) and len(res["checks"]) >= 9
    md = (out / "gpu_smoke.md").read_text()
    assert "| scone-gpt2-128m-1m" in md and f"checks: {len(res['checks'])}/" in md


@pytest.mark.slow
@pytest.mark.e2e
def test_loss_tolerance_tells_bf16_rounding_from_another_batch(prepared):
    """At initialisation the loss is near ln(vocab) for any batch, so the first-loss check is only
    worth something if LOSS_RTOL sits below what another batch moves it and above bf16 rounding:
    measured here with gpt2-128m's own config on real text (bf16 autocast on the CPU)."""
    import torch
    import torch.nn.functional as F

    from olmo_scone.config import load_model_config
    from olmo_scone.model import SconeOLMo
    from olmo_scone.serving.evaluate import chunks_from_tokens, token_streams

    overrides = ["model.init_device=cpu", "model.flash_attention=false"]
    cfg = load_model_config(REPO / "configs" / "olmo" / "gpt2-128m.yaml", overrides)
    chunks = chunks_from_tokens(token_streams(str(prepared.root), "train"), 256)
    assert len(chunks) >= 16
    torch.manual_seed(0)
    model = SconeOLMo(cfg).eval()

    def loss(ids, bf16=False):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids).logits.float()
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).item()

    batches = [torch.from_numpy(chunks[i : i + 4]) for i in range(0, 16, 4)]
    ref = loss(batches[0])
    assert abs(loss(batches[0], bf16=True) - ref) / ref < LOSS_RTOL / 4
    assert min(abs(loss(b) - ref) / ref for b in batches[1:]) > LOSS_RTOL


def _result(first=10.0, ref=10.0, logit=1e-4, table=1e-2, vocab_ok=True):
    return {
        "fgrams": {"gpt2": {"num_fgrams": 1_000_000, "check": vocab_ok}},
        "models": {
            "gpt2-128m": {
                "all_finite": True,
                "first_loss_rel_diff": abs(first - ref) / ref,
                "logits": {"cuda_ram_vs_cpu": logit, "table_vs_live_a_fgram": table},
            }
        },
    }


def test_checks_fail_on_disagreement():
    assert all(checks(_result()).values())
    bad = checks(_result(first=10.0 * (1 + 3 * LOSS_RTOL)))
    assert [k for k, ok in bad.items() if not ok] == [
        f"gpt2-128m: first loss vs CPU fp32 within {LOSS_RTOL:g}"
    ]
    assert not all(checks(_result(logit=2 * SERVED_TOL)).values())
    assert not all(checks(_result(table=2 * TABLE_TOL)).values())
    # each comparison has its own bound: the table's rounding is not allowed on device-vs-CPU serving
    assert not all(checks(_result(logit=TABLE_TOL / 2)).values())
    assert all(checks(_result(table=TABLE_TOL / 2)).values())
    assert not all(checks(_result(vocab_ok=False)).values())


def test_bad_arguments_and_a_missing_kit_are_one_line(tmp_path):
    for args, message in (
        (["--frobnicate"], "unknown argument --frobnicate"),
        (["--kit", str(tmp_path / "none")], "manifest.json not found: run `make gpu-kit`"),
    ):
        proc = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_import_check_counts_what_setuptools_vendors_as_setuptools(tmp_path):
    # once setuptools is imported its _vendor folder is on sys.path; jaraco then must still count
    # as part of setuptools (in the image), not as distributions the kit lacks
    import setuptools  # noqa: F401

    (tmp_path / "1.txt").write_text("jaraco\nmore_itertools\nbackports\nnumpy\nsetuptools\n")
    assert imported_distributions(tmp_path) == {"numpy", "setuptools"}
    assert missing_on_the_node(tmp_path) == set()
