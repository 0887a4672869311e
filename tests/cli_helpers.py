"""Running the project's scripts as a user would, and checking their errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from olmo_scone.launch import free_port

TINY_SCONE = str(Path(__file__).resolve().parents[1] / "configs" / "olmo" / "tiny-scone.yaml")


def assert_clean_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit code 2, no traceback, exactly one ``error:`` line, and it matches ``pattern``."""
    assert proc.returncode == 2, (proc.stdout or "") + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert re.search(pattern, errors[0]), errors[0]


def single_rank_env() -> Dict[str, str]:
    """This environment plus what torchrun gives rank 0 of 1, on a free port: a driver run as a plain
    process (errors before training, one-rank runs) joins a process group of its own."""
    return {
        **os.environ,
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }


def train_overrides(tokens, vocab, tags, folder, steps: int = 2) -> List[str]:
    """Overrides of ``tiny-scone.yaml`` for a seconds-long run on the given token files, vocabulary and tags."""
    return [
        f"data.tokens_dir={tokens}",
        f"data.fgram_tags={tags}",
        f"model.fgram.vocab_path={vocab}",
        f"save_folder={folder}",
        f"max_duration={steps}",
        "global_train_batch_size=2",
        "device_train_microbatch_size=2",
        "model.max_sequence_length=64",
        "scheduler.t_warmup=1",
        "seed=3",
        "wandb=null",
        "evaluators=[]",
    ]


def cli_run(main, argv, capsys) -> subprocess.CompletedProcess:
    """A CLI's ``main`` run in this process as its script runs it (``run_cli``), its exit code and
    output captured as a finished process's."""
    import pytest

    from olmo_scone.errors import run_cli

    capsys.readouterr()
    # train.py sets up one rank's environment when it finds none: not for the tests after this one
    env = dict(os.environ)
    try:
        with pytest.raises(SystemExit) as e:
            run_cli(main, [str(x) for x in argv])
    finally:
        os.environ.clear()
        os.environ.update(env)
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(argv, e.value.code, cap.out, cap.err)


def hold_lock(out: Path) -> subprocess.Popen:
    """Another process writing ``out``: it holds the output's lock until killed."""
    code = (
        "import sys, time; from olmo_scone.locking import OutputLock; l = OutputLock(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p
