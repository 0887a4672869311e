"""The capacity-bound study (recipes/capacity.py): its regime is what it says (from real modules),
every run's command is a valid config of the sizes its name claims, and a record's costs are
computed from the run's own files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from olmo_scone.accounting import account
from olmo_scone.config import SconeTrainConfig, load_config
from olmo_scone.recipes.capacity import BATCH, SEQ, VOCAB, regime, run_costs, runs, train_command
from olmo_scone.train.values import check_values

REPO = Path(__file__).resolve().parents[1]


def test_the_regime_puts_the_capacity_in_the_blocks():
    m, m2 = regime()
    assert m["run"] == "baseline-m" and m2["run"] == "baseline-2m"
    # most forward FLOPs in the blocks, the tied output layer counted: 2 d V of them
    assert 0.5 < m["block_flops_share"] < m2["block_flops_share"]
    assert m["tokens_per_param"] >= 10
    assert m2["block_params"] == pytest.approx(
        2 * m["block_params"], rel=0.01
    )  # one final LayerNorm


def _config(tmp_path, r):
    tok = tmp_path / "bpe.json"
    cfg_file, args = train_command(tmp_path, tmp_path / "data", tok, 100, r, seed=1)
    cfg = load_config(SconeTrainConfig, REPO / cfg_file, args)
    cfg.model.init_device = "meta"
    return cfg


def test_every_run_is_a_valid_config_of_the_sizes_its_name_claims(tmp_path):
    base = account(_config(tmp_path, runs()[0]).model, "m")
    names = set()
    for r in runs():
        names.add(r["name"])
        cfg = _config(tmp_path, r)
        check_values(cfg)
        assert cfg.model.vocab_size == VOCAB and cfg.global_train_batch_size == BATCH
        assert cfg.model.max_sequence_length == SEQ and str(cfg.tokenizer.identifier).endswith(
            "bpe.json"
        )
        assert cfg.model.rope == ("learnedpos" not in r["name"])
        if r["fgrams"]:
            acc = account(cfg.model, r["name"], r["fgrams"])
            blocks = (
                acc.fgram_model_params - cfg.model.fgram.max_n * cfg.model.d_model
            )  # its positions aside
            ratio = blocks / base.main_non_embedding_params
            assert ratio == pytest.approx(4.0 if "a4x" in r["name"] else 1.0, rel=0.05), (
                r["name"],
                ratio,
            )
            assert str(cfg.model.fgram.init) == ("olmo" if "olmoinit" in r["name"] else "identity")
    assert {
        "baseline-m",
        "baseline-2m",
        "scone-m-500k-a1x",
        "scone-m-100k-a1x",
        "scone-m-500k-a4x",
    } <= names


def test_print_lists_the_commands_and_runs_nothing(tmp_path):
    if not (REPO.parent / "shared" / "data" / "english-mix").is_dir():
        pytest.skip("../shared/data not present")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "capacity.py"),
            "--print",
            "--root",
            str(tmp_path),
            "--seeds",
            "1",
            "2",
            "--records",
            str(tmp_path / "records"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "train_tokenizer.py" in out and f"--vocab-size {VOCAB}" in out and "--tokenizer" in out
    trains = [line for line in out.splitlines() if "scripts/train.py" in line]
    assert len(trains) == 2 * len(runs())
    # the regime check first: both baselines of a seed before any SCONE run
    assert "baseline-m-seed1" in trains[0] and "baseline-2m-seed1" in trains[1]
    assert list(tmp_path.iterdir()) == []  # ran nothing, recorded nothing


def test_run_costs_from_a_runs_own_files(tmp_path):
    from omegaconf import OmegaConf

    r = next(r for r in runs() if r["name"] == "scone-m-500k-a1x")
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = _config(tmp_path, r)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (folder / "ds_config.json").write_text(
        json.dumps(
            {
                "train_batch_size": 32,
                "train_micro_batch_size_per_gpu": 8,
                "gradient_accumulation_steps": 2,
            }
        )
    )
    rows = [
        {
            "step": s,
            "tokens": s * BATCH * SEQ,
            "throughput/device/tokens_per_second": 1000.0,
            "scone/unique_fgrams_per_microbatch": 50.0,
            **({"eval/valid/CrossEntropyLoss": 9.0 - s / 10} if s % 5 == 0 else {}),
        }
        for s in range(1, 11)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    got = run_costs(folder, r)
    acc = account(cfg.model, r["name"], r["fgrams"])
    main = acc.inference_fwd_flops_per_token + 2 * cfg.model.d_model * VOCAB
    fgram = (
        (acc.training_fwd_flops_per_token - acc.inference_fwd_flops_per_token) * 50 * 10 * (32 // 8)
    )
    assert got["tokens"] == 10 * BATCH * SEQ
    assert got["training_flops"] == pytest.approx(3 * (main * 10 * BATCH * SEQ + fgram))
    assert got["tokens_per_s"] == 2000.0  # 2 ranks
    per_unique = 3 * (acc.training_fwd_flops_per_token - acc.inference_fwd_flops_per_token) * 4 * 50
    assert got["curve"] == [
        [5 * BATCH * SEQ, pytest.approx(3 * main * 5 * BATCH * SEQ + 5 * per_unique), 8.5],
        [10 * BATCH * SEQ, pytest.approx(got["training_flops"]), 8.0],
    ]


def test_the_report_is_rebuilt_from_the_records_alone(tmp_path):
    from olmo_scone.recipes.capacity import MARKERS, main
    from olmo_scone.recipes.repro_seeds import write_record

    records = tmp_path / "records"
    for seed, (base, deep, scone) in zip((1, 2, 3), ((100, 95, 96), (102, 96, 99), (101, 94, 97))):
        for name, ppl in (("baseline-m", base), ("baseline-2m", deep), ("scone-m-500k-a1x", scone)):
            curve = [[1000 * k, 1e9 * k, 5.0 - k / 10] for k in (1, 2)]
            extra = {"tokens": 2000, "training_flops": 2e9, "tokens_per_s": 1500.0, "curve": curve}
            write_record(
                records,
                name,
                seed,
                7,
                {"wikitext103-valid": ppl, "english-mix-valid": ppl},
                ["cmd"],
                extra,
            )
    doc = tmp_path / "results.md"
    doc.write_text(f"intro\n{MARKERS[0]}\nSTALE-TABLE\n{MARKERS[1]}\noutro\n")
    with pytest.raises(SystemExit) as e:
        from olmo_scone.errors import run_cli

        run_cli(
            main,
            [
                "--report",
                "--records",
                str(records),
                "--steps",
                "7",
                "--doc",
                str(doc),
                "--root",
                str(tmp_path / "root"),
            ],
        )
    assert e.value.code == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "STALE-TABLE" not in text
    # baseline-2m: -5.0, -5.9, -6.9% against baseline-m of the same seed: resolved at 95%
    row = next(line for line in text.splitlines() if line.startswith("| baseline-2m"))
    assert "**better** (95%)" in row and "-5.9" in row
    assert "what each run cost" in text and "1,500" in text
    assert (tmp_path / "results-capacity-seeds.png").stat().st_size > 1000
    assert (tmp_path / "results-capacity-curves.png").stat().st_size > 1000


def test_findings_pair_runs_by_seed_and_resolve_only_at_95_percent():
    from olmo_scone.recipes.capacity_findings import finding_rows, paired, seeds_to_resolve

    def rec(run, seed, wiki, mix):
        return {"run": run, "seed": seed, "wikitext103-valid": wiki, "english-mix-valid": mix}

    records = [
        rec("baseline-m", 1, 100.0, 50.0),
        rec("baseline-m", 2, 110.0, 50.0),
        rec("baseline-m", 3, 120.0, 50.0),
        # 5%, 6%, 7% better than the same seed's baseline-m on WikiText; mixed on english-mix
        rec("scone-m-500k-a1x", 1, 95.0, 49.0),
        rec("scone-m-500k-a1x", 2, 110.0 * 0.94, 51.0),
        rec("scone-m-500k-a1x", 3, 120.0 * 0.93, 49.5),
        rec("scone-m-100k-a1x", 1, 97.0, 50.0),
        rec("baseline-2m", 4, 80.0, 40.0),  # no seed in common with SCONE-m: no pair
    ]
    d = paired(records, "scone-m-500k-a1x", "baseline-m", "wikitext103-valid")
    assert {k: round(v, 6) for k, v in d.items()} == {1: -5.0, 2: -6.0, 3: -7.0}
    rows = {r[0].split(".")[0]: r for r in finding_rows(records)}
    # mean -6, sd 1, t(2) = 4.303: half-width 4.303 / sqrt(3) = 2.48 -> resolved
    assert rows["1"][2].startswith("-6.0% ± 1.0 (95%: ±2.5) [seeds 1, 2, 3]")
    assert "resolved: better" in rows["1"][3]
    # english-mix: -2%, +2%, -1%: not resolved
    assert rows["1"][5].startswith("not resolved (3 seeds")
    # one seed of S = 100K: a value, no interval; baseline-2m shares no seed
    assert rows["2"][2].startswith("-2.1% [seeds 1]") and rows["2"][3] == "1 seed: no interval yet"
    assert rows["4"][3] == "not run yet"
    # n = 3: 4.303 / sqrt(3) = 2.48 < 4.3 (n = 2: 12.706 / sqrt(2) = 8.98 is not)
    assert seeds_to_resolve(-4.3, 1.0) == 3
    # past the t table, 1.96: 1.96 * 2 / sqrt(16) = 0.98 < 1 (n = 15: 1.012)
    assert seeds_to_resolve(1.0, 2.0) == 16
    assert seeds_to_resolve(0.0, 1.0) is None


def test_a_reproduction_moves_only_the_runs_own_folder():
    import json

    from olmo_scone.recipes.reproduce import moved_commands, run_folder_of

    rec = json.loads((REPO / "docs/results-capacity-runs/scone-m-500k-a1x-seed1.json").read_text())
    old = "runs/repro-cpu-capacity/seed1/scone-m-500k-a1x"
    assert run_folder_of(rec["commands"]) == old
    new = moved_commands(rec["commands"], "runs/check/s1/x")
    text = "\n".join(new)
    assert old not in text
    assert "--out runs/check/s1/x-served" in text and "save_folder=runs/check/s1/x " in text
    assert "runs/check/s1/x/eval-wikitext103-valid.json" in text
    # the study's inputs are read where they are
    for kept in (
        "data.tokens_dir=runs/repro-cpu-capacity/data",
        "tokenizer.identifier=runs/repro-cpu-capacity/bpe-2048.json",
        "runs/repro-cpu-capacity/fgrams-500k.safetensors",
        "../shared/data/wikitext/wiki.valid.tokens",
    ):
        assert kept in text
    assert len(new) == len(rec["commands"])
