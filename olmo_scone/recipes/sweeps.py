"""The paper's two scaling axes as command lists: the number of f-grams, and the size of ``A_fgram``.

``SCALE=tiny`` runs on this machine's CPU (2 ranks, gloo) on the demo corpus: it builds a
vocabulary and sidecar per f-gram count, trains the tiny baseline and the tiny SCONE models with
the same main model, and plots them. Any other scale names the paper configs (``olmo-1b``,
``olmo-1.3b`` main models) and prints the ``torchrun`` commands for ``NODES`` nodes of 8 GPUs
(``--run`` launches them from this node, for a scheduler that starts one copy per node).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import ArgumentParser, fail
from .tiny import tiny_cpu

TINY_FGRAMS = [25_000, 100_000, 400_000]
TINY_FGRAM_LAYERS = [1, 2, 4]
TINY_STEPS = 60
PY = sys.executable


def _tiny(axis: str, root: Path, data: Path, steps: int) -> List[List[str]]:
    train = [str(Path(PY).parent / "torchrun"), "--nproc_per_node=2", "scripts/train.py"]
    common = tiny_cpu(steps, data, group="tiny-sweep", eval_every=steps // 6, warmup=10)
    # a re-run of the sweep runs every command: the trainer does nothing for a finished run and
    # resumes an interrupted one (train/run_state.py)
    cmds = [
        train + ["configs/olmo/tiny-baseline.yaml", f"save_folder={root}/tiny-baseline", *common]
    ]
    points = (
        [(s, 2) for s in TINY_FGRAMS]
        if axis == "fgrams"
        else [(TINY_FGRAMS[1], n) for n in TINY_FGRAM_LAYERS]
    )
    built = set()
    for s, layers in points:
        vocab, tags = root / f"fgrams-{s // 1000}k.safetensors", root / f"tags-{s // 1000}k"
        if s not in built:
            built.add(s)
            cmds.append(
                [
                    PY,
                    "scripts/build_fgrams.py",
                    "--tokens",
                    str(data),
                    "--num-fgrams",
                    str(s),
                    "--out",
                    str(vocab),
                    "--overwrite",
                ]
            )
            cmds.append(
                [
                    PY,
                    "scripts/tag_fgrams.py",
                    "--vocab",
                    str(vocab),
                    "--tokens",
                    str(data),
                    "--out",
                    str(tags),
                    "--overwrite",
                ]
            )
        name = f"tiny-scone-{s // 1000}k-L{layers}"
        cmds.append(
            train
            + [
                "configs/olmo/tiny-scone.yaml",
                f"save_folder={root}/{name}",
                f"run_name={name}",
                f"wandb.name={name}",
                f"model.fgram.vocab_path={vocab}",
                f"data.fgram_tags={tags}",
                f"model.fgram.n_layers={layers}",
                *common,
            ]
        )
    return cmds


def _paper(axis: str, scale: str, nodes: int) -> List[List[str]]:
    size = scale.removeprefix("olmo-")
    if size not in ("1b", "1.3b"):
        fail(f"SCALE={scale}: the paper's SCONE configs exist for olmo-1b and olmo-1.3b (or tiny)")
    bigger = {"1b": "1.9b", "1.3b": "1.9b"}[size]
    if axis == "fgrams":
        runs = [f"olmo-{size}", f"olmo-{bigger}"] + [
            f"scone-{size}-{c}-a0.6b" for c in ("10m", "100m", "1b")
        ]
    else:
        runs = [f"olmo-{size}", f"olmo-{bigger}"] + [
            f"scone-{size}-10m-{a}" for a in ("a0.6b", "a1.8b")
        ]
    launch = [
        "torchrun",
        f"--nnodes={nodes}",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=${MASTER_ADDR}:29500",
        "--rdzv_id=${RUN_ID}",
    ]
    return [launch + ["scripts/train.py", f"configs/olmo/{r}.yaml"] for r in runs]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="sweep.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "axis",
        choices=["fgrams", "fgram-model"],
        help="what the sweep varies: S (fgrams) or A_fgram's size (fgram-model)",
    )
    p.add_argument(
        "--scale",
        default="tiny",
        help="tiny (CPU, runs here) or olmo-1b / olmo-1.3b (prints torchrun commands)",
    )
    p.add_argument("--nodes", type=int, default=1, help="nodes the printed commands are for")
    p.add_argument(
        "--root", type=Path, default=Path("runs/sweeps"), help="folder of the sweep's runs"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("runs/demo/data"),
        help="prepared token directory (scripts/prepare_data.py)",
    )
    p.add_argument("--steps", type=int, default=TINY_STEPS, help="training steps per run")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the tiny sweep's curves")
    p.add_argument(
        "--run", action="store_true", help="run the commands (the default for SCALE=tiny)"
    )
    a = p.parse_args(argv)
    if a.scale == "tiny":
        root = a.root / f"tiny-{a.axis}"
        cmds = _tiny(a.axis, root, a.data, a.steps)
        run = True
    else:
        cmds = _paper(a.axis, a.scale, a.nodes)
        run = a.run
    for c in cmds:
        print(" ".join(shlex.quote(x) if "$" not in x else x for x in c), flush=True)
        if run:
            r = subprocess.run(c)
            if r.returncode != 0:
                fail(f"sweep step failed (exit {r.returncode}): {' '.join(c[:4])} ...")
    if a.scale == "tiny":
        from ..plotting import plot_runs

        runs = sorted(d for d in root.iterdir() if (d / "metrics.jsonl").is_file())
        out = a.plot or root / "curves.png"
        plot_runs(
            runs,
            out,
            title=f"tiny CPU sweep over {'the number of f-grams' if a.axis == 'fgrams' else 'A_fgram depth'}",
        )
        print(f"curves: {out}")
    return 0
