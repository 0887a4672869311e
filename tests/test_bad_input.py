"""Every CLI against every bad input we know of: exit 2, exactly one ``error:`` line, no traceback,
nothing left under ``--out``, and no lock file left beside it.

The CLIs run in this process (``run_cli(main, argv)``, what each ``scripts/*.py`` does), on the
small real artifacts of conftest's ``art`` fixture.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch
from cli_helpers import TINY_SCONE, assert_clean_error, cli_run, hold_lock, train_overrides

from olmo_scone.data.cli import main as prepare_main
from olmo_scone.errors import run_cli
from olmo_scone.export import main as export_main
from olmo_scone.fgrams.cli import build_main, tag_main
from olmo_scone.locking import lock_path
from olmo_scone.serving.cli import evaluate_main, generate_main
from olmo_scone.train.cli import main as train_main
from olmo_scone.train.cli import split_args

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_SCONE
pytestmark = pytest.mark.slow


# ---- corruptions of a copy of an artifact or checkpoint ------------------------------------------
def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


def _copy_with(which: str, change: Callable[[Path], None]):
    """A case's subject: a copy of ``art.<which>`` (the served artifact or the checkpoint), changed."""

    def make(a, tmp: Path) -> Path:
        copy = _copy(getattr(a, which), tmp)
        change(copy)
        return copy

    return make


def served_with(change: Callable[[Path], None]):
    return _copy_with("served", change)


def run_with(change: Callable[[Path], None]):
    return _copy_with("run", change)


def _edit_manifest(key, value):
    """A crafted manifest: ``key`` set to ``value`` and the manifest's own checksum recomputed, so
    what refuses it is the check of that field, not the seal."""
    from olmo_scone.serving.manifest import seal

    def change(s: Path) -> None:
        m = json.loads((s / "manifest.json").read_text())
        if callable(value):
            value(m)
        else:
            m[key] = value
        (s / "manifest.json").write_text(json.dumps(seal(m)))

    return change


def _shard_outside(m) -> None:
    m["shards"][0]["file"] = "../../other/table-00000.safetensors"


def _swap_shards(s: Path) -> None:
    """A shard from another export in place of ours: the same rows, dtype and size, other values,
    and a header checksum that is right for them (only the manifest can tell)."""
    from olmo_scone.serving.table_format import read_shard, write_shard

    path = s / "table-00000.safetensors"
    tensors, meta = read_shard(path)
    write_shard(
        path,
        {k: v + 1 for k, v in tensors.items()},
        meta["dtype"],
        int(meta["row_start"]),
        int(meta["row_stop"]),
        int(meta["d_model"]),
    )


def _interrupted(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """The run as if killed before it finished (no finished.json: a relaunch resumes it), then ``change``."""

    def apply(r: Path) -> None:
        (r / "finished.json").unlink()
        change(r)

    return apply


def _latest_to_deleted(r: Path) -> None:
    tag = (r / "latest").read_text().strip()
    shutil.rmtree(r / tag)


def _truncate_model_states(r: Path) -> None:
    tag = (r / "latest").read_text().strip()
    _truncate(r / tag / "mp_rank_00_model_states.pt")


def _truncate_first_shard(s: Path) -> None:
    _truncate(s / "table-00000.safetensors", 0.9)


def _corrupt_model(s: Path) -> None:
    _flip_byte(s / "model.safetensors")


def _truncate_model(s: Path) -> None:
    _truncate(s / "model.safetensors")


def _json(tmp: Path, obj) -> Path:
    p = tmp / "ds.json"
    p.write_text(json.dumps(obj))
    return p


def _truncate_index(s: Path) -> None:
    _truncate(s / "matcher" / "index-keys.npy")


def _corrupt_index(s: Path) -> None:
    _flip_byte(s / "matcher" / "index-values.npy")


def _garbage_manifest(s: Path) -> None:
    (s / "manifest.json").write_text("{not json")


def _with_token(tokens: Path, tmp: Path, token: int) -> Path:
    """A copy of the prepared folder with one train token set to ``token``."""
    import numpy as np

    copy = _copy(tokens, tmp)
    first = sorted((copy / "train").glob("*.npy"))[0]
    data = np.memmap(first, dtype=np.uint16, mode="r+")
    data[len(data) // 2] = token
    data.flush()
    return copy


def _with_row(tags: Path, tmp: Path) -> Path:
    """A copy of the sidecar with one train row past the vocabulary."""
    import numpy as np

    copy = _copy(tags, tmp)
    first = sorted(p for p in copy.rglob("*.fgram.npy") if "train" in str(p))[0]
    rows = np.memmap(first, dtype=np.int32, mode="r+")
    rows[len(rows) // 2] = 10**6
    rows.flush()
    return copy


class Case(NamedTuple):
    cli: Callable
    args: Callable  # (art, tmp, subject) -> argv
    pattern: str
    subject: Callable = None  # (art, tmp) -> Path: a corrupted copy the args name
    out: Callable = None  # (tmp) -> Path that must not exist afterwards


def OUT(tmp):
    return tmp / "out"


CASES = {
    # prepare_data.py
    "prepare --processes -3": Case(
        prepare_main,
        lambda a, t, s: ["--out", t / "out", "--processes", "-3"],
        r"--processes: must be 0 or more",
        out=OUT,
    ),
    # build_fgrams.py
    "build --processes -3": Case(
        build_main,
        lambda a, t, s: [
            "--tokens",
            a.tokens,
            "--num-fgrams",
            10,
            "--processes",
            -3,
            "--out",
            t / "out",
        ],
        r"--processes: must be 0 or more",
        out=OUT,
    ),
    "build --num-fgrams 0": Case(
        build_main,
        lambda a, t, s: ["--tokens", a.tokens, "--num-fgrams", 0, "--out", t / "out"],
        r"--num-fgrams: must be a positive integer",
        out=OUT,
    ),
    "build uint32 ids as uint16": Case(
        build_main,
        lambda a, t, s: [
            "--tokens",
            a.bare_uint32,
            "--tokenizer",
            "allenai_gpt-neox-olmo-dolma-v1_5",
            "--num-fgrams",
            100,
            "--out",
            t / "out",
        ],
        r"token id \d+ is not below .*vocabulary size 50280",
        out=OUT,
    ),
    "build --out a directory": Case(
        build_main,
        lambda a, t, s: ["--tokens", a.tokens, "--num-fgrams", 10, "--out", t],
        r"--out .* is a directory",
    ),
    # tag_fgrams.py
    "tag --out a file": Case(
        tag_main,
        lambda a, t, s: ["--vocab", a.vocab, "--tokens", a.tokens, "--out", s],
        r"--out .* is a file",
        subject=lambda a, t: (t / "a-file", (t / "a-file").write_text("x"))[0],
    ),
    # train.py (all before any process group)
    "train broken YAML": Case(
        train_main,
        lambda a, t, s: [s],
        r"is not valid YAML \(line \d+, column \d+\)",
        subject=lambda a, t: (
            t / "bad.yaml",
            (t / "bad.yaml").write_text("model:\n  d_model: [1, 2\n"),
        )[0],
    ),
    "train global_train_batch_size=0": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "global_train_batch_size=0",
        ],
        r"global_train_batch_size = 0: must be a positive integer",
        out=OUT,
    ),
    "train max_duration=-5": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "max_duration=-5",
        ],
        r"max_duration -5 is not a positive number of steps",
        out=OUT,
    ),
    "train deepspeed JSON overriding the ZeRO stage": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            f"deepspeed.config_path={s}",
        ],
        r"sets zero_optimization\.stage = 2 but the YAML gives 1 \(deepspeed\.zero_stage\)",
        subject=lambda a, t: _json(t, {"zero_optimization": {"stage": 2}}),
        out=OUT,
    ),
    "train deepspeed JSON with another batch size": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            f"deepspeed.config_path={s}",
        ],
        r"sets train_batch_size = 64 but the YAML gives 2 \(global_train_batch_size\)",
        subject=lambda a, t: _json(t, {"train_batch_size": 64}),
        out=OUT,
    ),
    "train deepspeed JSON with an optimizer": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            f"deepspeed.config_path={s}",
        ],
        r"sets DeepSpeed's 'optimizer'",
        subject=lambda a, t: _json(t, {"optimizer": {"type": "Adam"}}),
        out=OUT,
    ),
    "train compile set": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "compile.mode=default",
        ],
        r"does not implement compile = \{'mode': 'default'.*\} \(OLMo's default: None\)",
        out=OUT,
    ),
    "train fsdp changed": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "fsdp.sharding_strategy=NO_SHARD",
        ],
        r"does not implement fsdp\.sharding_strategy = 'NO_SHARD' \(OLMo's default: 'FULL_SHARD'\)",
        out=OUT,
    ),
    "train data.num_workers": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "data.num_workers=4",
        ],
        r"does not implement data\.num_workers = 4",
        out=OUT,
    ),
    "train load_path elsewhere": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "load_path=/elsewhere",
        ],
        r"does not implement load_path = '/elsewhere'",
        out=OUT,
    ),
    "train distributed_strategy=fsdp set explicitly": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "distributed_strategy=fsdp",
        ],
        r"does not implement distributed_strategy = 'fsdp' \(allowed: null\)",
        out=OUT,
    ),
    "train max_duration under one batch of tokens": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "max_duration=100T",
        ],
        r"max_duration '100T' is less than one step \([\d,]+ tokens: global_train_batch_size x max_sequence_length\)",
        out=OUT,
    ),
    "train max_duration in days": Case(
        train_main,
        lambda a, t, s: [
            TINY,
            *train_overrides(a.tokens, a.vocab, a.tags, t / "out"),
            "max_duration=2d",
        ],
        r"max_duration '2d' is neither a number of steps, tokens \(2e11T\) nor epochs \(2ep\)",
        out=OUT,
    ),
    "train --resume, interrupted run, latest names a deleted tag": Case(
        train_main,
        lambda a, t, s: [s / "config.yaml", f"save_folder={s}", "--resume"],
        r"'latest' names step2, which is not whole \('step2' is not a checkpoint folder\), and no "
        "earlier complete checkpoint exists",
        subject=run_with(_interrupted(_latest_to_deleted)),
    ),
    "train relaunch, interrupted run, truncated model_states.pt": Case(
        train_main,
        lambda a, t, s: [s / "config.yaml", f"save_folder={s}"],
        r"'latest' names step2, which is not whole \(mp_rank_00_model_states\.pt is \d+ bytes, \d+ "
        r"were written\)",
        subject=run_with(_interrupted(_truncate_model_states)),
    ),
    # export_embeddings.py
    "export --tag step999": Case(
        export_main,
        lambda a, t, s: [a.run, "--out", t / "out", "--tag", "step999"],
        r"checkpoint 'step999' does not exist \(there: step2\)",
        out=OUT,
    ),
    "export --shard-gb inf": Case(
        export_main,
        lambda a, t, s: [a.run, "--out", t / "out", "--shard-gb", "inf"],
        r"--shard-gb: must be a finite number, got inf",
        out=OUT,
    ),
    "build --memory-gb 1e-9": Case(
        build_main,
        lambda a, t, s: [
            "--tokens",
            a.tokens,
            "--num-fgrams",
            10,
            "--memory-gb",
            "1e-9",
            "--out",
            t / "out",
        ],
        r"--memory-gb 1e-09 is too small for [\d,]+ tokens: the merge would need [\d,]+ partitions \(at "
        r"most 65,536\); give at least --memory-gb",
        out=OUT,
    ),
    "train, a token id past the vocabulary in a prepared folder": Case(
        train_main,
        lambda a, t, s: [TINY, *train_overrides(s, a.vocab, a.tags, t / "out")],
        r"token id 60000 is not below allenai_gpt-neox-olmo-dolma-v1_5's vocabulary size 50280",
        subject=lambda a, t: _with_token(a.tokens, t, 60000),
        out=OUT,
    ),
    "train, a sidecar row past the vocabulary": Case(
        train_main,
        lambda a, t, s: [TINY, *train_overrides(a.tokens, a.vocab, s, t / "out")],
        r"f-gram sidecar file .* holds row \d+, outside \[-1, \d+\) of its vocabulary",
        subject=lambda a, t: _with_row(a.tags, t),
        out=OUT,
    ),
    "export --batch-size 0": Case(
        export_main,
        lambda a, t, s: [a.run, "--out", t / "out", "--batch-size", 0],
        r"--batch-size: must be a positive integer",
        out=OUT,
    ),
    "export --shard-gb 0": Case(
        export_main,
        lambda a, t, s: [a.run, "--out", t / "out", "--shard-gb", 0],
        r"--shard-gb: must be positive",
        out=OUT,
    ),
    "export --out a file": Case(
        export_main, lambda a, t, s: [a.run, "--out", a.vocab], r"--out .* is a file"
    ),
    "export, latest names a deleted tag": Case(
        export_main,
        lambda a, t, s: [s, "--out", t / "out"],
        r"'latest' names step2, which is not whole \('step2' is not a checkpoint folder\)",
        subject=run_with(_latest_to_deleted),
        out=OUT,
    ),
    "export, truncated model_states.pt": Case(
        export_main,
        lambda a, t, s: [s, "--out", t / "out"],
        r"'latest' names step2, which is not whole \(mp_rank_00_model_states\.pt is \d+ bytes",
        subject=run_with(_truncate_model_states),
        out=OUT,
    ),
    # evaluate.py
    "evaluate non-UTF-8 --text": Case(
        evaluate_main,
        lambda a, t, s: [a.served, "--text", s],
        r"is not UTF-8 text",
        subject=lambda a, t: (
            t / "latin1.txt",
            (t / "latin1.txt").write_bytes("café".encode("latin-1")),
        )[0],
    ),
    "evaluate --batch-size 0": Case(
        evaluate_main,
        lambda a, t, s: [a.served, "--tokens", a.tokens, "--batch-size", 0],
        r"--batch-size: must be a positive integer",
    ),
    "evaluate --out a directory": Case(
        evaluate_main,
        lambda a, t, s: [a.served, "--tokens", a.tokens, "--out", t],
        r"--out .* is a directory",
    ),
    "evaluate invalid manifest JSON": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens, "--out", t / "out"],
        r"manifest\.json is not valid JSON",
        subject=served_with(_garbage_manifest),
        out=OUT,
    ),
    "evaluate truncated model.safetensors": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"model\.safetensors is [\d,]+ bytes, the manifest says [\d,]+",
        subject=served_with(_truncate_model),
    ),
    "evaluate corrupted model.safetensors": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"model\.safetensors does not match its sha256 in manifest\.json",
        subject=served_with(_corrupt_model),
    ),
    "evaluate manifest dtype edited": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"is not the one the manifest lists \(it holds fp32",
        subject=served_with(_edit_manifest("dtype", "bf16")),
    ),
    "evaluate --no-verify --table mmap, truncated shard": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens, "--no-verify", "--table", "mmap"],
        r"table-00000\.safetensors is [\d,]+ bytes, its header needs",
        subject=served_with(_truncate_first_shard),
    ),
    "evaluate, manifest edited without resealing": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"manifest\.json does not match its own checksum",
        subject=served_with(
            lambda s: (s / "manifest.json").write_text(
                (s / "manifest.json").read_text().replace('"export_ranks": 1', '"export_ranks": 2')
            )
        ),
    ),
    "evaluate, manifest with a string for d_model": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"d_model is '128', expected int",
        subject=served_with(_edit_manifest("d_model", "128")),
    ),
    "evaluate, manifest path outside the artifact": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens, "--no-verify"],
        r"shard 0 '\.\./\.\./other/table-00000\.safetensors' points outside the folder",
        subject=served_with(_edit_manifest("shards", _shard_outside)),
    ),
    "evaluate --no-verify, a shard swapped from another export": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens, "--no-verify", "--table", "mmap"],
        r"table-00000\.safetensors is not the one the manifest lists .*checksum",
        subject=served_with(_swap_shards),
    ),
    "evaluate, config.yaml edited": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"config\.yaml (does not match its sha256|is [\d,]+ bytes, the manifest says)",
        subject=served_with(
            lambda s: (s / "config.yaml").write_text(
                (s / "config.yaml")
                .read_text()
                .replace("activation_type: gelu", "activation_type: relu")
            )
        ),
    ),
    "evaluate, artifact of format version 1": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"format version 1, this olmo-scone reads versions 4, 5: re-export it",
        subject=served_with(_edit_manifest("format_version", 1)),
    ),
    "evaluate --no-verify --table mmap, truncated index": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens, "--no-verify", "--table", "mmap"],
        r"index-keys\.npy is unreadable .* truncated",
        subject=served_with(_truncate_index),
    ),
    "evaluate, corrupted index": Case(
        evaluate_main,
        lambda a, t, s: [s, "--tokens", a.tokens],
        r"index-values\.npy does not match the sha256",
        subject=served_with(_corrupt_index),
    ),
    "evaluate, latest names a deleted tag (baseline path)": Case(
        evaluate_main,
        lambda a, t, s: [s, "--text", REPO / "README.md"],
        r"'latest' names step2, which is not whole \('step2' is not a checkpoint folder\)",
        subject=run_with(_latest_to_deleted),
    ),
    # generate.py
    "generate --temperature -1": Case(
        generate_main,
        lambda a, t, s: [a.served, "--prompt", "Hi", "--temperature", -1],
        r"--temperature: must be 0 or more",
    ),
    "generate --top-k -5": Case(
        generate_main,
        lambda a, t, s: [a.served, "--prompt", "Hi", "--top-k", -5],
        r"--top-k: must be 0 or more",
    ),
    "generate --top-p 2": Case(
        generate_main,
        lambda a, t, s: [a.served, "--prompt", "Hi", "--top-p", 2],
        r"--top-p: must be in \(0, 1\]",
    ),
    "generate --max-new-tokens -4": Case(
        generate_main,
        lambda a, t, s: [a.served, "--prompt", "Hi", "--max-new-tokens", -4],
        r"--max-new-tokens: must be a positive integer",
    ),
    "generate --prompt ''": Case(
        generate_main, lambda a, t, s: [a.served, "--prompt", ""], r"--prompt is empty"
    ),
}
if not torch.cuda.is_available():
    CASES["evaluate --device cuda without CUDA"] = Case(
        evaluate_main,
        lambda a, t, s: [a.served, "--tokens", a.tokens, "--device", "cuda"],
        r"CUDA is not available",
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(name, art, tmp_path, capsys):
    case = CASES[name]
    subject = case.subject(art, tmp_path) if case.subject else None
    proc = cli_run(case.cli, case.args(art, tmp_path, subject), capsys)
    assert_clean_error(proc, case.pattern)
    if case.out is not None:
        out = case.out(tmp_path)
        assert not out.exists(), f"{name}: {out} was left behind"
        assert not lock_path(out).exists(), f"{name}: lock file left behind"
    assert not list(tmp_path.glob(".*.tmp-*")) and not list(tmp_path.glob(".*.lock")), sorted(
        tmp_path.iterdir()
    )


@pytest.mark.parametrize("cli", ["build", "tag", "export", "evaluate", "prepare"])
def test_a_second_writer_of_the_same_output_is_refused(cli, art, tmp_path, capsys):
    out = tmp_path / "out.safetensors" if cli == "build" else tmp_path / "out"
    argv = {
        "build": (build_main, ["--tokens", art.tokens, "--num-fgrams", 100, "--out", out]),
        "tag": (tag_main, ["--vocab", art.vocab, "--tokens", art.tokens, "--out", out]),
        "export": (export_main, [art.run, "--out", out]),
        "evaluate": (
            evaluate_main,
            [art.served, "--tokens", art.tokens, "--max-batches", 1, "--out", out],
        ),
        "prepare": (prepare_main, [REPO / "README.md", "--out", out]),
    }[cli]
    holder = hold_lock(out)
    try:
        proc = cli_run(*argv, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert_clean_error(proc, rf"{out.name} is being written by pid {holder.pid} on ")
    assert not out.exists()


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(art, tmp_path, capsys):
    """A run killed mid-write leaves .<out>.tmp-<pid>-<rand> beside its output; the next run removes
    them, and only them: not another output's, even one whose name is this one's plus a suffix."""
    out = tmp_path / "fgrams.safetensors"
    stale_dir = tmp_path / ".fgrams.safetensors.tmp-4242-abc123xy"
    stale_dir.mkdir()
    (stale_dir / "partial.keys.npy").write_bytes(b"x" * 1000)
    stale_file = tmp_path / ".fgrams.safetensors.tmp-4243-def456xy"
    stale_file.write_bytes(b"half")
    others = [
        tmp_path / ".other.safetensors.tmp-4244-ghi789xy",  # another output's: not ours to remove
        tmp_path / ".fgrams.safetensors.v2.tmp-4245-jkl012xy",  # output fgrams.safetensors.v2's
        tmp_path / ".fgrams.tmp-4246-mno345xy",  # output fgrams's
    ]
    for other in others:
        other.write_bytes(b"keep")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(
            build_main,
            [
                "--tokens",
                str(art.tokens),
                "--num-fgrams",
                "100",
                "--processes",
                "1",
                "--out",
                str(out),
            ],
        )
    assert e.value.code == 0, capsys.readouterr().err
    assert out.is_file() and not stale_dir.exists() and not stale_file.exists()
    assert all(other.exists() for other in others)
    assert not lock_path(out).exists()


def test_resume_and_olmo_style_overrides_anywhere():
    """OLMo's --key=value and key=value both work; --resume may stand anywhere among them."""
    args, resume = split_args(
        ["cfg.yaml", "--resume", "max_duration=3", "--save_folder=/x", "--model.d_model=8"]
    )
    assert resume and args == ["cfg.yaml", "max_duration=3", "save_folder=/x", "model.d_model=8"]
    args, resume = split_args(["cfg.yaml", "--save-overwrite"])
    assert not resume and args == ["cfg.yaml", "save_overwrite=True"]


def test_the_final_deepspeed_config_is_saved_with_the_run(art):
    """save_folder/ds_config.json is what DeepSpeed was given; a user JSON may add settings the YAML
    does not own, and they are merged in."""
    from olmo_scone.config import SconeTrainConfig, load_config
    from olmo_scone.train.ds_config import deepspeed_config

    saved = json.loads((art.run / "ds_config.json").read_text())
    assert saved["zero_optimization"]["stage"] == 1 and saved["train_batch_size"] == 2
    cfg = load_config(SconeTrainConfig, art.run / "config.yaml")
    assert saved == deepspeed_config(cfg, 1)
    extra = art.root / "extra-ds.json"
    extra.write_text(
        json.dumps(
            {"zero_optimization": {"reduce_bucket_size": 1234, "stage": 1}, "train_batch_size": 2}
        )
    )
    cfg.deepspeed.config_path = str(extra)
    merged = deepspeed_config(cfg, 1)
    assert (
        merged["zero_optimization"]["reduce_bucket_size"] == 1234
        and merged["zero_optimization"]["stage"] == 1
    )
