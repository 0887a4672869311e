"""The reproduction study is the one the issue asks for: sizes checked on real modules, commands
valid, and the driver's guards (unknown runs, mixed budgets, short vocabularies, the report splice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from olmo_scone.accounting import account
from olmo_scone.config import SconeTrainConfig, load_config
from olmo_scone.errors import SconeError
from olmo_scone.fgrams.vocab import save_vocab
from olmo_scone.recipes.repro import (
    A_SWEEP_FGRAMS,
    all_runs,
    check_vocab_size,
    execution_order,
    runs,
    select_runs,
    train_command,
)
from olmo_scone.recipes.repro_report import BEGIN, END, collect, report, splice

REPO = Path(__file__).resolve().parents[1]


def _model(r, tmp_path):
    cfg_file, args = train_command(tmp_path, tmp_path / "data", 10, r)
    cfg = load_config(SconeTrainConfig, REPO / cfg_file, args)
    cfg.model.init_device = "meta"
    return cfg, account(cfg.model, r["name"], r["fgrams"] or None)


def test_study_axes_and_sizes(tmp_path):
    rs = {r["name"]: r for r in runs()}
    assert {"baseline-m", "baseline-2m"} <= set(rs)
    assert len({r["fgrams"] for r in rs.values() if r["fgrams"] and r["a"] == "1x"}) >= 3
    assert {r["a"] for r in rs.values() if r["fgrams"] == A_SWEEP_FGRAMS} == {"0.5x", "1x", "2x"}
    _, m = _model(rs["baseline-m"], tmp_path)
    _, m2 = _model(rs["baseline-2m"], tmp_path)
    assert m2.main_non_embedding_params / m.main_non_embedding_params == pytest.approx(2.0, rel=0.1)
    for name, r in rs.items():
        cfg, acc = _model(r, tmp_path)
        assert cfg.seed == 6198 and cfg.max_duration == 10 and cfg.model.rope
        assert cfg.save_interval == 3  # checkpoints every steps/3: an interrupted run resumes
        if r["fgrams"]:
            # SCONE-m: the same main model as baseline-m (resident parameters, inference FLOPs)
            assert (
                acc.main_params == m.main_params
                and acc.inference_fwd_flops_per_token == m.inference_fwd_flops_per_token
            )
            ratio = float(r["a"][:-1])
            assert acc.fgram_model_params / m.main_non_embedding_params == pytest.approx(
                ratio, rel=0.15
            ), name
            assert cfg.model.fgram.vocab_path.endswith(f"fgrams-{r['fgrams'] // 1000}k.safetensors")
    for r in all_runs():  # the ablation differs from its main run in A_fgram's init alone
        cfg, _ = _model(r, tmp_path)
        if r["fgrams"]:
            assert cfg.model.fgram.init == (
                "olmo" if r["name"].endswith("-olmoinit") else "identity"
            )
    # baseline-2m costs about twice the non-embedding FLOPs of SCONE-m at inference
    assert m2.inference_fwd_flops_per_token > 1.6 * m.inference_fwd_flops_per_token
    _, args = train_command(tmp_path, tmp_path / "data", 10, rs["baseline-m"], seed=7)  # --seed
    assert "seed=7" in args


def test_run_selection_and_order():
    with pytest.raises(SconeError, match="unknown run.*nope"):
        select_runs(["baseline-m", "nope"])
    assert [r["name"] for r in select_runs(["baseline-2m"])] == ["baseline-2m"]
    assert select_runs(None) == all_runs() and len(all_runs()) == len(runs()) + 1
    order = [r["name"] for r in execution_order(runs())]
    assert order[:3] == ["baseline-m", f"scone-m-{A_SWEEP_FGRAMS // 1000}k-a1x", "baseline-2m"]
    assert sorted(order) == sorted(r["name"] for r in runs())


def test_a_vocabulary_smaller_than_its_name_is_refused(tmp_path):
    v = tmp_path / "v.safetensors"
    toks = np.array([[1, 2, -1, -1, -1], [3, 4, 5, -1, -1]], dtype=np.int32)
    save_vocab(v, toks, np.array([2, 3]), np.array([9, 7]), {})
    check_vocab_size(v, 2)
    with pytest.raises(SconeError, match="holds 2 f-grams, fewer than the 3"):
        check_vocab_size(v, 3)


def test_report_is_spliced_between_markers(tmp_path):
    doc = tmp_path / "results.md"
    first = splice(doc, "table one")
    assert first.startswith("# Results") and f"{BEGIN}\ntable one\n{END}" in first
    doc.write_text(
        "# Results\n\nintro\n\n"
        + first.split("# Results", 1)[1].strip()
        + "\n\n## Analysis\nkept\n"
    )
    second = splice(doc, "table two")
    assert "table one" not in second and f"{BEGIN}\ntable two\n{END}" in second
    assert "intro" in second and second.endswith("## Analysis\nkept\n") and second.count(BEGIN) == 1


def test_print_lists_every_command_and_runs_nothing(tmp_path):
    if not (REPO.parent / "shared" / "data" / "english-mix").is_dir():
        pytest.skip("../shared/data not present")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "repro.py"),
            "--print",
            "--root",
            str(tmp_path),
            "--only",
            "scone-m-25k-a1x",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert (
        "prepare_data.py" in out
        and "--num-fgrams 25000" in out
        and "--num-fgrams 100000" not in out
    )
    assert "train.py configs/olmo/tiny-scone.yaml" in out and "max_duration=200" in out
    assert "export_embeddings.py" in out and out.count("evaluate.py") == 2
    assert list(tmp_path.iterdir()) == []  # ran nothing
    # paths inside the checkout are printed relative to it, so a command can be pasted into another clone
    assert "'../shared/data/english-mix/*.jsonl.gz'" in out and f"{REPO}/" not in out


def _fake_finished_run(root: Path, r, wiki: float, mix: float) -> None:
    """A run folder as the study leaves it: resolved config, metrics, both evaluations."""
    from omegaconf import OmegaConf

    folder = root / r["name"]
    folder.mkdir(parents=True)
    cfg_file, args = train_command(root, root / "data", 10, r)
    cfg = load_config(SconeTrainConfig, REPO / cfg_file, args)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (folder / "metrics.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "step": s,
                    "tokens": s * 4096,
                    "train/loss": 8.0 - s / 10,
                    "eval/valid/Perplexity": 900.0 - s,
                }
            )
            + "\n"
            for s in (5, 10)
        )
    )
    for name, ppl in (("wikitext103-valid", wiki), ("english-mix-valid", mix)):
        (folder / f"eval-{name}.json").write_text(json.dumps({"perplexity": ppl}))
    (folder / "finished.json").write_text(json.dumps({"step": 10}))  # what the trainer writes last


def test_report_tables_and_plots_from_finished_runs(tmp_path):
    by = {r["name"]: r for r in all_runs()}
    _fake_finished_run(tmp_path, by["baseline-m"], 200.0, 100.0)
    _fake_finished_run(tmp_path, by["scone-m-100k-a1x"], 190.0, 104.0)
    _fake_finished_run(tmp_path, by["scone-m-100k-a1x-olmoinit"], 220.0, 126.0)
    (tmp_path / "scone-m-25k-a1x").mkdir()  # unfinished: no evaluations, left out
    (tmp_path / "scone-m-300k-a1x").mkdir()  # evaluated, but its training never finished: left out
    (tmp_path / "scone-m-300k-a1x" / "eval-wikitext103-valid.json").write_text(
        '{"perplexity": 1.0}'
    )
    rows = collect(tmp_path)
    assert [r["name"] for r in rows] == [
        "baseline-m",
        "scone-m-100k-a1x",
        "scone-m-100k-a1x-olmoinit",
    ]
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# Results\n\nanalysis kept\n")
    text = report(tmp_path, rows, ["python scripts/train.py ..."], 10, doc)
    main_table, ablation = text.split("initialisation ablation")
    assert (
        "| scone-m-100k-a1x " in main_table
        and "190.00 (-5.0%)" in main_table
        and "104.00 (+4.0%)" in main_table
    )
    assert "olmoinit" not in main_table
    assert "220.00 (+10.0%)" in ablation and "126.00 (+26.0%)" in ablation  # vs baseline-m
    assert "190.00 (-5.0%)" in ablation  # the identity-init run, for comparison
    assert "40,960" in text  # 10 steps x 32 x 128 tokens, in the heading (0.04M)
    assert (doc.parent / "results-cpu-scaling.png").stat().st_size > 1000
    assert (doc.parent / "results-cpu-curves.png").stat().st_size > 1000
    written = doc.read_text()
    assert (
        written.startswith("# Results\n\nanalysis kept\n")
        and BEGIN in written
        and "python scripts/train.py" in written
    )


def test_tags_from_other_token_files_are_refused(tmp_path):
    from olmo_scone.recipes.repro import check_tags_match

    (tmp_path / "data").mkdir()
    (tmp_path / "tags").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"fingerprint": "aaa"}))
    (tmp_path / "tags" / "fgram_tags.json").write_text(json.dumps({"tokens_fingerprint": "aaa"}))
    check_tags_match(tmp_path / "tags", tmp_path / "data")
    (tmp_path / "tags" / "fgram_tags.json").write_text(json.dumps({"tokens_fingerprint": "bbb"}))
    with pytest.raises(SconeError, match="made for other token files"):
        check_tags_match(tmp_path / "tags", tmp_path / "data")


def test_report_with_baselines_only(tmp_path):
    by = {r["name"]: r for r in all_runs()}
    _fake_finished_run(tmp_path, by["baseline-m"], 200.0, 100.0)
    doc = tmp_path / "results.md"
    text = report(tmp_path, collect(tmp_path), [], 10, doc)
    assert (
        "| baseline-m " in text
        and "200.00" in text
        and (tmp_path / "results-cpu-scaling.png").is_file()
    )


def test_curves_read_olmo_metric_names_and_older_run_folders(tmp_path):
    """plot_curves reads OLMo's train/CrossEntropyLoss and, for run folders written before the
    rename, train/loss."""
    from olmo_scone.plotting import plot_runs, read_metrics, train_loss

    new, old = tmp_path / "new", tmp_path / "old"
    for folder, key in ((new, "train/CrossEntropyLoss"), (old, "train/loss")):
        folder.mkdir()
        lines = [
            json.dumps(
                {"step": s, "tokens": s * 10, key: 9.0 - s, "eval/valid/Perplexity": 100.0 - s}
            )
            for s in (1, 2)
        ]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert (
        [train_loss(m) for m in read_metrics(new)]
        == [8.0, 7.0]
        == [train_loss(m) for m in read_metrics(old)]
    )
    out = plot_runs([new, old], tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_records_pair_each_run_with_its_own_baseline(tmp_path):
    """Paired differences, their spread and the 95% verdicts, against a hand computation; records
    of another budget are not mixed in; the seeds section is spliced without touching the other."""
    import math

    from olmo_scone.recipes import repro_seeds as rs

    recs = tmp_path / "records"
    wiki = {"baseline-m": (100, 120, 110), "scone-m-300k-a1x": (95, 114, 110)}
    wiki["baseline-2m"] = (90, 108, 99)  # 10% better on every seed
    for run, ppls in wiki.items():
        for seed, ppl in zip((1, 2, 3), ppls):
            rs.write_record(
                recs, run, seed, 200, {"wikitext103-valid": ppl, "english-mix-valid": 50}, []
            )
    rs.write_record(
        recs, "baseline-m", 4, 100, {"wikitext103-valid": 1, "english-mix-valid": 1}, []
    )
    records = rs.read_records(recs, 200)
    assert len(records) == 9 and rs.read_record(recs, "baseline-m", 4, 200) is None
    d = rs.paired_differences(records, "scone-m-300k-a1x", "wikitext103-valid")
    assert d == pytest.approx({1: -5.0, 2: -5.0, 3: 0.0})
    s = rs.summary(list(d.values()))
    sd = math.sqrt(((5 / 3) ** 2 * 2 + (10 / 3) ** 2) / 2)  # deviations from the mean -10/3
    assert s["mean"] == pytest.approx(-10 / 3) and s["sd"] == pytest.approx(sd)
    assert s["ci95"] == pytest.approx(4.303 * sd / math.sqrt(3))
    assert rs.verdict(s) == "not resolved"
    assert rs.verdict(rs.summary([-10.0, -10.0, -10.0])) == "**better** (95%)"
    assert rs.verdict(rs.summary([3.0, 4.0, 5.0])) == "**worse** (95%)"
    assert rs.verdict(rs.summary([3.0])) == "needs 2+ seeds"

    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\n{BEGIN}\nsingle-seed table\n{END}\n\nanalysis\n")
    text = rs.seeds_report(records, 200, doc)
    line = next(x for x in text.splitlines() if x.startswith("| scone-m-300k-a1x"))
    assert "1, 2, 3" in line and "-3.3 ± 2.9% (95%: ±7.2)" in line and "not resolved" in line
    line = next(x for x in text.splitlines() if x.startswith("| baseline-2m"))
    assert "-10.0 ± 0.0%" in line and "**better** (95%)" in line
    written = doc.read_text()
    assert "single-seed table" in written and written.count(rs.BEGIN) == 1
    assert "analysis" in written and (tmp_path / "results-cpu-seeds.png").stat().st_size > 1000


def test_recorded_runs_are_not_trained_again(tmp_path):
    if not (REPO.parent / "shared" / "data" / "english-mix").is_dir():
        pytest.skip("../shared/data not present")
    from olmo_scone.recipes.repro_seeds import write_record

    recs = tmp_path / "records"
    write_record(
        recs, "baseline-m", 6199, 200, {"wikitext103-valid": 1.0, "english-mix-valid": 1.0}, []
    )
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "repro.py"),
        "--print",
        "--root",
        str(tmp_path / "r"),
    ]
    cmd += ["--seeds", "6198", "6199", "--only", "baseline-m", "--records", str(recs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "# recorded: baseline-m seed 6199" in proc.stdout
    assert "save_folder=" in proc.stdout and "seed6199/baseline-m" not in proc.stdout
