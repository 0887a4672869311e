"""The tiny CPU training recipe that ``make demo``, the sweeps and the CPU study share: one list of
overrides of ``configs/olmo/tiny-*.yaml``, so the three cannot drift apart.

``python -m olmo_scone.recipes.tiny --steps 100 --data runs/demo/data --group demo ...`` prints the
overrides, shell-quoted, for the Makefile.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional, Sequence

#: the tiny runs' batch: 16 sequences per step by default, 8 per rank and micro-batch (2 CPU ranks)
GLOBAL_BATCH = 16
MICRO_BATCH = 8
#: save only at the end, unless a run asks for intermediate checkpoints
NO_INTERMEDIATE_SAVES = 1_000_000


def tiny_cpu(
    steps: int,
    data: Path,
    *,
    group: str,
    eval_every: int,
    warmup: int,
    save_every: Optional[int] = None,
    eval_batches: int = 20,
    seed: Optional[int] = None,
    global_batch: int = GLOBAL_BATCH,
) -> List[str]:
    """Overrides (OLMo's ``key=value``) for a tiny run of ``steps`` on the token directory ``data``,
    evaluated on its held-out split every ``eval_every`` steps, logged to W&B group ``group``."""
    out = [
        f"data.tokens_dir={data}",
        f"max_duration={steps}",
        f"global_train_batch_size={global_batch}",
        f"device_train_microbatch_size={MICRO_BATCH}",
        f"eval_interval={eval_every}",
        f"save_interval={save_every or NO_INTERMEDIATE_SAVES}",
        f"scheduler.t_warmup={warmup}",
        f"evaluators=[{{label: valid, type: lm, subset_num_batches: {eval_batches}}}]",
        f"wandb.group={group}",
    ]
    if seed is not None:
        out.append(f"seed={seed}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..errors import ArgumentParser, positive_int

    p = ArgumentParser(
        prog="python -m olmo_scone.recipes.tiny", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--steps", type=positive_int, required=True, help="training steps")
    p.add_argument("--data", type=Path, required=True, help="token directory (prepare_data.py)")
    p.add_argument("--group", required=True, help="W&B group")
    p.add_argument("--eval-every", type=positive_int, required=True, help="evaluate every N steps")
    p.add_argument("--warmup", type=positive_int, required=True, help="warm-up steps")
    p.add_argument(
        "--save-every",
        type=positive_int,
        default=None,
        help="checkpoint every N steps (default: at the end only)",
    )
    p.add_argument("--eval-batches", type=positive_int, default=20, help="batches per evaluation")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the config's)")
    a = p.parse_args(argv)
    overrides = tiny_cpu(
        a.steps,
        a.data,
        group=a.group,
        eval_every=a.eval_every,
        warmup=a.warmup,
        save_every=a.save_every,
        eval_batches=a.eval_batches,
        seed=a.seed,
    )
    print(" ".join(shlex.quote(o) for o in overrides))
    return 0


if __name__ == "__main__":
    from ..errors import run_cli

    run_cli(main)
