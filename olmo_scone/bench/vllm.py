"""vLLM throughput and time per output token, SCONE against the same main model without SCONE
(``scripts/benchmark_vllm.py``; needs ``make serve-env``).

Here, in the training environment: the real-text f-gram vocabularies and the bf16 artifacts with
synthetic rows of the offloaded-inference benchmark (bench/inference.py: the paper's GPT-2-size
main model, d 768, 12 layers, random weights, whose speed does not depend on them), a baseline
folder with the same main-model file under vLLM's own ``GPT2LMHeadModel``, and prompts of real
held-out text. In ``.venv-serve``: bench/vllm_measure.py, once per table and mode, both engines in
one process, rounds alternating. Prints the table that docs/benchmarks.md records.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..errors import ArgumentParser, fail, positive_int
from ..markdown import table
from .common import REPO, machine, prepared_real_text, real_text_vocab
from .inference import _artifact, _config

D_MODEL, N_HEADS, N_LAYERS, SEQ = 768, 12, 12, 1024
SERVE_PY = REPO / ".venv-serve" / "bin" / "python"


def baseline_folder(scone_vllm: Path, out: Path) -> Path:
    """``out``: the SCONE folder's main model (hard-linked) under vLLM's own GPT-2, no table."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((scone_vllm / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("scone_")}
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in scone_vllm.iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            os.link(f, out / f.name)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument(
        "--cache",
        type=Path,
        default=REPO / "runs" / "bench",
        help="vocabularies and real text (shared with the other benchmarks)",
    )
    p.add_argument(
        "--work", type=Path, default=REPO / "runs" / "bench-vllm", help="artifacts and results"
    )
    p.add_argument("--tables", default="1m,10m", help="f-gram vocabularies: 1m, 10m")
    p.add_argument(
        "--ram-tables", default="1m", help="tables also measured in RAM (10M x 768 bf16 is 15.4 GB)"
    )
    p.add_argument(
        "--modes", default="ram,mmap", help="table modes to measure (ram only for --ram-tables)"
    )
    p.add_argument("--batches", default="1,8,64", help="batch sizes")
    p.add_argument("--new-tokens", type=positive_int, default=32, help="tokens generated a prompt")
    p.add_argument("--prompt-len", type=positive_int, default=96, help="prompt length (real text)")
    p.add_argument("--rounds", type=positive_int, default=3, help="timed rounds per batch size")
    a = p.parse_args(argv)
    if not SERVE_PY.is_file():
        fail(f"{SERVE_PY} is missing: run `make serve-env` first")
    m = prepared_real_text(a.cache / "real-text")
    valid = np.concatenate([np.asarray(x, dtype=np.int64) for x in m.memmaps("valid")])
    batches = [int(b) for b in a.batches.split(",")]
    prompts = [
        valid[i * a.prompt_len : (i + 1) * a.prompt_len].tolist() for i in range(max(batches))
    ]
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "prompts.json").write_text(json.dumps(prompts))
    cfg_path = _config(a.work, D_MODEL, N_HEADS, N_LAYERS, SEQ)
    results: Dict[str, object] = {"machine": machine(), "runs": []}
    rows = []
    for t in [x for x in a.tables.split(",") if x]:
        vocab = real_text_vocab(a.cache, t, m)
        art = _artifact(a.work / f"artifact-{t}", cfg_path, vocab, D_MODEL)
        base = baseline_folder(art / "vllm", a.work / f"baseline-{t}")
        modes = (["ram"] if t in a.ram_tables.split(",") else []) + ["mmap"]
        for mode in [x for x in modes if x in a.modes.split(",")]:
            out = a.work / f"vllm-{t}-{mode}.json"
            cmd = [str(SERVE_PY), "-m", "olmo_scone.bench.vllm_measure"]
            cmd += ["--scone", str(art / "vllm"), "--baseline", str(base), "--table", mode]
            cmd += ["--prompts", str(a.work / "prompts.json"), "--batches", a.batches]
            cmd += ["--new-tokens", str(a.new_tokens), "--rounds", str(a.rounds)]
            cmd += ["--out", str(out)]
            print(f"[{t} {mode}] {' '.join(cmd)}", flush=True)
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                fail(f"the vLLM measurement failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            got = json.loads(out.read_text())
            results["runs"].append({"fgrams": t, **got})
            s = got["scone"]
            matched = s["matched"] / max(1, s["tokens"])
            for r in got["rows"]:
                rows.append(
                    [
                        t.upper(),
                        mode,
                        r["batch"],
                        f"{r['baseline_tokens_per_s']:.1f}",
                        f"{r['scone_tokens_per_s']:.1f}",
                        f"{r['ratio']:.3f}",
                        f"{r['baseline_tpot_ms']:.1f}",
                        f"{r['scone_tpot_ms']:.1f}",
                        f"{matched:.0%}",
                    ]
                )
    head = ["f-grams", "table", "batch", "baseline tok/s", "SCONE tok/s", "SCONE/baseline (paired)"]
    head += ["baseline TPOT ms", "SCONE TPOT ms", "positions matched"]
    print(f"\n# vLLM {machine()}\n")
    print(table(rows, head))
    (a.work / "results.json").write_text(json.dumps(results, indent=2))
    return 0
