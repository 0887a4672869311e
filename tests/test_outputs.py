"""No command can delete or overwrite one of its inputs, ``--overwrite`` replaces only what the same
tool wrote, and one output has one lock however it is reached (symlinks resolved)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import TINY_SCONE, assert_clean_error, cli_run, hold_lock, train_overrides

from olmo_scone.data.cli import main as prepare_main
from olmo_scone.export import main as export_main
from olmo_scone.fgrams.cli import build_main, tag_main
from olmo_scone.serving.cli import evaluate_main
from olmo_scone.train.cli import main as train_main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.read_bytes()[:64])
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def inputs(art, tmp_path):
    """Copies of the run, the token files, the vocabulary + sidecar and the artifact, to be attacked."""
    d = tmp_path / "inputs"
    for name, src in (
        ("run", art.run),
        ("tokens", art.tokens),
        ("tags", art.tags),
        ("served", art.served),
    ):
        shutil.copytree(src, d / name)
    shutil.copy(art.vocab, d / "fgrams.safetensors")
    return d


DESTRUCTIVE = {
    # what the adversarial pass ran (each deleted or overwrote its input, exit 0)
    "export RUN --out RUN --overwrite": (
        export_main,
        lambda d: [d / "run", "--out", d / "run", "--overwrite"],
        "run",
        r"--out .*run is the training run .*run: an output may not overlap an input",
    ),
    "tag --tokens D --out D --overwrite": (
        tag_main,
        lambda d: [
            "--vocab",
            d / "fgrams.safetensors",
            "--tokens",
            d / "tokens",
            "--out",
            d / "tokens",
            "--overwrite",
        ],
        "tokens",
        r"--out .*tokens is the token files .*tokens: an output may not overlap an input",
    ),
    "evaluate ART --out ART/manifest.json": (
        evaluate_main,
        lambda d: [d / "served", "--tokens", d / "tokens", "--out", d / "served" / "manifest.json"],
        "served",
        r"manifest\.json exists and is not an evaluation result: --overwrite replaces only what evaluate\.py wrote",
    ),
    # and their relatives
    "export RUN --out RUN/sub --overwrite": (
        export_main,
        lambda d: [d / "run", "--out", d / "run" / "step2", "--overwrite"],
        "run",
        r"lies inside the training run",
    ),
    "export RUN --out PARENT --overwrite": (
        export_main,
        lambda d: [d / "run", "--out", d, "--overwrite"],
        "run",
        r"contains the training run",
    ),
    "tag --out the vocabulary": (
        tag_main,
        lambda d: [
            "--vocab",
            d / "fgrams.safetensors",
            "--tokens",
            d / "tokens",
            "--out",
            d / "fgrams.safetensors",
            "--overwrite",
        ],
        "fgrams.safetensors",
        r"is the f-gram vocabulary",
    ),
    "build --out inside the token directory": (
        build_main,
        lambda d: [
            "--tokens",
            d / "tokens",
            "--num-fgrams",
            10,
            "--out",
            d / "tokens" / "manifest.json",
            "--overwrite",
        ],
        "tokens",
        r"lies inside the token files",
    ),
    "prepare --out over its input folder": (
        prepare_main,
        lambda d: [
            d / "tokens" / "manifest.json",
            "--out",
            d / "tokens",
            "--overwrite",
            "--input-format",
            "text",
        ],
        "tokens",
        r"contains input .*manifest\.json",
    ),
    "train save_folder = the token directory": (
        train_main,
        lambda d: [
            TINY_SCONE,
            *train_overrides(d / "tokens", d / "fgrams.safetensors", d / "tags", d / "tokens"),
            "load_policy=restart",
        ],
        "tokens",
        r"save_folder .*tokens is data\.tokens_dir",
    ),
    # --overwrite onto something another tool wrote
    "export --overwrite onto a token directory": (
        export_main,
        lambda d: [d / "run", "--out", d / "tokens", "--overwrite"],
        "tokens",
        r"tokens exists and is not an exported folder: --overwrite replaces only what export_embeddings\.py wrote",
    ),
    "tag --overwrite onto a serving artifact": (
        tag_main,
        lambda d: [
            "--vocab",
            d / "fgrams.safetensors",
            "--tokens",
            d / "tokens",
            "--out",
            d / "served",
            "--overwrite",
        ],
        "served",
        r"served exists and is not an f-gram sidecar",
    ),
    "build --overwrite onto a token file": (
        build_main,
        lambda d: [
            "--tokens",
            d / "tags",
            "--num-fgrams",
            10,
            "--out",
            d / "run" / "config.yaml",
            "--overwrite",
        ],
        "run",
        r"(config\.yaml exists and is not an f-gram vocabulary|has no manifest\.json)",
    ),
    "prepare --overwrite onto a training run": (
        prepare_main,
        lambda d: [REPO / "README.md", "--out", d / "run", "--overwrite", "--input-format", "text"],
        "run",
        r"run holds files that are not a prepared dataset: --overwrite replaces only what prepare_data\.py wrote",
    ),
    "evaluate --out the model folder itself": (
        evaluate_main,
        lambda d: [d / "served", "--tokens", d / "tokens", "--out", d / "served"],
        "served",
        r"--out .*served is a directory",
    ),
    "evaluate --out inside the token files": (
        evaluate_main,
        lambda d: [d / "served", "--tokens", d / "tokens", "--out", d / "tokens" / "result.json"],
        "tokens",
        r"lies inside the token files",
    ),
    "evaluate --out onto another file": (
        evaluate_main,
        lambda d: [d / "served", "--tokens", d / "tokens", "--out", d / "run" / "run.json"],
        "run",
        r"run\.json exists and is not an evaluation result",
    ),
}


@pytest.mark.parametrize("name", sorted(DESTRUCTIVE))
def test_a_destructive_command_is_refused_and_its_input_intact(name, inputs, capsys):
    main, argv, victim, pattern = DESTRUCTIVE[name]
    before = _snapshot(inputs)
    proc = cli_run(main, argv(inputs), capsys)
    assert_clean_error(proc, pattern)
    assert _snapshot(inputs) == before, f"{name} changed {victim}"


def test_overwrite_still_replaces_the_tools_own_output(art, tmp_path, capsys):
    out = tmp_path / "tags"
    for _ in range(2):
        proc = cli_run(
            tag_main,
            ["--vocab", art.vocab, "--tokens", art.tokens, "--out", out, "--overwrite"],
            capsys,
        )
        assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "fgram_tags.json").read_text())["files"]


def test_a_save_folder_reached_through_a_symlink_takes_the_real_folders_lock(art, tmp_path, capsys):
    real = tmp_path / "runs" / "real"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    holder = hold_lock(real)
    try:
        proc = cli_run(
            train_main,
            [TINY_SCONE, *train_overrides(art.tokens, art.vocab, art.tags, link)],
            capsys,
        )
    finally:
        holder.kill()
        holder.wait()
    assert_clean_error(proc, rf"save_folder .*link is being written by pid {holder.pid} on ")
    assert list(real.iterdir()) == []


def test_a_killed_exports_temporaries_never_reach_the_artifact(art, tmp_path, capsys):
    """A kill mid-shard leaves .table-*.safetensors.tmp-<pid>-<rand> in OUT.partial; the resumed
    export removes it, and the finished artifact holds only what its manifest lists."""
    out = tmp_path / "served"
    partial = tmp_path / "served.partial"
    partial.mkdir()
    (partial / ".table-00000.safetensors.tmp-4242-abcdefgh").write_bytes(b"half a shard")
    proc = cli_run(export_main, [art.run, "--out", out, "--dtype", "fp32"], capsys)
    assert proc.returncode == 0, proc.stderr
    from olmo_scone.export import own_checksummed

    manifest = json.loads((out / "manifest.json").read_text())
    listed = set(manifest["files"]) | set(own_checksummed(manifest)) | {"manifest.json"}
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert present == listed and not partial.exists()


@pytest.mark.parametrize("which", ["artifact", "save_folder"])
def test_evaluate_json_is_the_only_thing_on_stdout(which, art, baseline_run):
    """`evaluate.py --json ... | python -m json.tool` works: what loading prints (DeepSpeed's
    accelerator warning, zero_to_fp32's lines for a save_folder) goes to stderr."""
    model = art.served if which == "artifact" else baseline_run
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            str(model),
            "--text",
            str(REPO / "README.md"),
            "--json",
            "--max-batches",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=proc.stdout, capture_output=True, text=True
    )
    assert tool.returncode == 0, proc.stdout
    result = json.loads(proc.stdout)
    assert result["tokens"] > 0 and result["perplexity"] > 1
