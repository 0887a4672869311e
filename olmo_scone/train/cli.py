"""``torchrun ... scripts/train.py CONFIG [key=value | --key=value ...] [--resume]``.

Overrides take OLMo's two forms (``key=value`` and ``--key=value``, normalised with OLMo's
``clean_opt``), and ``--resume`` may stand anywhere among them. ``python scripts/train.py ...``
without torchrun trains as one rank, as ``torchrun --nproc_per_node=1`` would.
"""

from __future__ import annotations

import contextlib
import os
from typing import List, Optional, Sequence, Tuple

from ..config import SconeTrainConfig, load_config
from ..errors import ArgumentParser


def split_args(argv: Sequence[str]) -> Tuple[List[str], bool]:
    """(config and overrides in OLMo's ``key=value`` form, whether ``--resume`` was given)."""
    from olmo.util import clean_opt

    resume = "--resume" in argv
    rest = [a for a in argv if a != "--resume"]
    out = []
    for a in rest:
        out.append(clean_opt(a) if a.startswith("--") and a not in ("--help", "-h") else a)
    return out, resume


def main(argv: Optional[Sequence[str]] = None) -> int:
    import sys

    p = ArgumentParser(
        prog="train.py", description="Train a SCONE or baseline OLMo model with DeepSpeed ZeRO."
    )
    p.add_argument("config", help="YAML config (configs/olmo/*.yaml)")
    p.add_argument("overrides", nargs="*", help="OLMo-style key=value (or --key=value) overrides")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from save_folder/latest (same as load_path=latest)",
    )
    args, resume = split_args(list(sys.argv[1:] if argv is None else argv))
    a = p.parse_args(args + (["--resume"] if resume else []))
    one_rank_without_torchrun()
    with said_once_per_node():
        cfg = load_config(SconeTrainConfig, a.config, a.overrides)
    from ..supervision import die_with_torchrun_agent

    die_with_torchrun_agent()  # a killed agent must not leave this rank training on its own
    from .trainer import SconeTrainer

    with save_folder_lock(cfg.save_folder):
        with said_once_per_node():
            trainer = SconeTrainer(cfg, resume=a.resume)
        trainer.fit()
    return 0


def one_rank_without_torchrun() -> None:
    """A plain ``python scripts/train.py``: set up what torchrun would for one rank. (DeepSpeed
    would otherwise look for MPI and end in an ``mpi4py`` traceback.)"""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return
    from ..launch import free_port

    os.environ.update(
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )
    print("not under torchrun: training as one rank (torchrun --nproc_per_node=N for N ranks)")


@contextlib.contextmanager
def said_once_per_node():
    """Config, data and save_folder errors before training are the same on every rank: only each
    node's local rank 0 prints the ``error:`` line, the others exit 2 quietly (under torchrun the
    line was otherwise repeated once per rank among the agent's report). Every rank leaves the line
    in its torchrun error file, so the agent's report ends with it too."""
    from ..errors import SconeError, record_for_torchrun

    try:
        yield
    except SconeError as e:
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            record_for_torchrun(f"error: {e}")
            raise SystemExit(2)
        raise


def save_folder_lock(save_folder: str):
    """One writer per save_folder, held by rank 0 for the whole run: a second launch, or a
    ``--resume`` racing a run that is still writing, stops with one line naming the holder."""
    from ..locking import OutputLock

    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    return OutputLock(save_folder, "save_folder")
