"""The GPU smoke run (``scripts/gpu_smoke.sh``): does the project run on a GPU node, and does the GPU
compute what the CPU computes?

For each model (``tiny-scone``, ``gpt2-128m``, ``scone-gpt2-128m-1m``):

1. f-grams: vocabularies counted and sidecar tags written on the node from the kit's tokens; each
   vocabulary's sha256 must equal the one ``make gpu-kit`` recorded on the CPU machine (same bytes
   under numpy 2 / Python 3.12 as under numpy 1 / Python 3.11);
2. training: a 1-rank ``torchrun`` DeepSpeed ZeRO-1 run (NCCL, bf16 on a GPU) from weights built on
   the CPU generator (``model.init_device=cpu``), so a 1-step CPU fp32 run with the same seed starts
   from the same weights on the same batch: their first losses must agree within ``LOSS_RTOL``;
   every loss finite; training tokens/s and model FLOP utilisation from the run's own metrics;
3. export on the GPU (``A_fgram`` over every f-gram into a bf16 table);
4. serving: logits of held-out chunks served on the GPU from the pinned host table (RAM and
   memory-mapped) against the same served on the CPU, and the CPU-served SCONE model against the
   trained model's own forward (``A_fgram`` live): within ``SERVED_TOL`` and ``TABLE_TOL``;
5. decoding: ms per generated token, SCONE vs its baseline, at batch 1 and 16 (KV cache; the f-gram
   lookup of each new token is part of the step).

``--device cpu`` runs the same steps with small models on the CPU (the CI test of this script); the
"GPU" side is then the CPU too, still training in bf16 (DeepSpeed's bf16 engine), so the first-loss
check meets real bf16 rounding; the served comparisons are then exact up to float summation order.
Everything lands in ``OUT/gpu_smoke.json`` and ``OUT/gpu_smoke.md``; any failed check makes the exit
status non-zero after the report is written.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..atomic import atomic_write_json, atomic_write_text, sha256_file
from ..errors import ArgumentParser, fail
from ..launch import torchrun_command
from ..paths import REPO

#: First loss, bf16 on the device vs fp32 on the CPU, same weights and batch. At initialisation the
#: loss is near ln(vocab) whatever the batch or the weights, so a loose bound checks nothing: this
#: one is ~10x what bf16 moved gpt2-128m's first loss on the CPU (DeepSpeed's bf16 engine 8.5e-6,
#: autocast 2.5e-5) and below what another 4 x 256-token batch of real text moved it (5e-4 to
#: 5e-3); tests/test_gpu_smoke.py pins both sides (docs/gpu.md).
LOSS_RTOL = 2e-4
#: Served on the device vs served on the CPU: fp32 on both sides from the same table rows, so only
#: the order of float sums differs (max |difference| relative to the largest |logit|).
SERVED_TOL = 1e-3
#: The bf16 table against ``A_fgram`` computed live in fp32: the table's rounding, propagated.
TABLE_TOL = 5e-2
#: dense bf16 peak of the GPUs this is meant for (NVIDIA data sheets, SXM parts, without sparsity)
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


@dataclass
class Model:
    name: str
    config: str  # under configs/olmo
    fgrams: Optional[str] = None  # key of Plan.vocab_sizes, None: a baseline
    overrides: List[str] = field(default_factory=list)


@dataclass
class Plan:
    device: str
    steps: int
    global_batch: int
    micro_batch: int
    vocab_sizes: Dict[str, int]
    models: List[Model]
    eval_chunks: int
    decode_steps: int
    decode_batches: Sequence[int] = (1, 16)


def plan_for(device: str) -> Plan:
    """The GPU plan: the real configs. The CPU plan: the same three, shrunk to run in a minute."""
    if device == "cuda":
        gpt2 = ["model.flash_attention=false"]
        return Plan(
            device,
            steps=30,
            global_batch=32,
            micro_batch=16,
            vocab_sizes={"tiny": 200_000, "gpt2": 1_000_000},
            models=[
                Model("tiny-scone", "tiny-scone.yaml", "tiny"),
                Model("gpt2-128m", "gpt2-128m.yaml", None, gpt2),
                Model("scone-gpt2-128m-1m", "scone-gpt2-128m-1m.yaml", "gpt2", gpt2),
            ],
            eval_chunks=8,
            decode_steps=32,
        )
    small = ["model.d_model=64", "model.n_heads=2", "model.n_layers=2"]
    small += ["model.max_sequence_length=64", "model.init_std=0.02"]
    small_fgram = ["model.fgram.n_layers=1", "model.fgram.n_heads=2"]
    return Plan(
        device,
        steps=3,
        global_batch=4,
        micro_batch=2,
        vocab_sizes={"tiny": 20_000, "gpt2": 50_000},
        models=[
            Model("tiny-scone", "tiny-scone.yaml", "tiny", ["model.max_sequence_length=64"]),
            Model("gpt2-128m", "gpt2-128m.yaml", None, small),
            Model("scone-gpt2-128m-1m", "scone-gpt2-128m-1m.yaml", "gpt2", small + small_fgram),
        ],
        eval_chunks=2,
        decode_steps=4,
        decode_batches=(1, 4),
    )


# ---- 1. f-grams -------------------------------------------------------------------------------
def build_fgrams(plan: Plan, tokens: Path, out: Path, expected: Dict[str, str]) -> Dict[str, Dict]:
    """Vocabulary and tags per size; a vocabulary's sha256 is checked when the kit recorded one."""
    made = {}
    for key, s in plan.vocab_sizes.items():
        vocab, tags = out / f"fgrams-{key}.safetensors", out / f"tags-{key}"
        t0 = time.time()
        _run(
            [sys.executable, "scripts/build_fgrams.py", "--tokens", str(tokens)]
            + ["--num-fgrams", str(s), "--out", str(vocab), "--overwrite"]
        )
        t1 = time.time()
        _run(
            [
                sys.executable,
                "scripts/tag_fgrams.py",
                "--vocab",
                str(vocab),
                "--tokens",
                str(tokens),
            ]
            + ["--out", str(tags), "--overwrite"]
        )
        digest = sha256_file(vocab)
        from ..fgrams.vocab import load_vocab

        rows = len(load_vocab(vocab))
        want = expected.get(str(s))
        made[key] = {
            "num_fgrams": s,
            "rows": rows,
            "vocab": str(vocab),
            "tags": str(tags),
            "sha256": digest,
            "count_s": round(t1 - t0, 1),
            "tag_s": round(time.time() - t1, 1),
            "check": None if want is None else digest == want,
        }
    return made


# ---- 2. training --------------------------------------------------------------------------------
def train_args(
    m: Model, plan: Plan, tokens: Path, fgrams: Dict[str, Dict], folder: Path
) -> List[str]:
    args = [
        f"save_folder={folder}",
        f"data.tokens_dir={tokens}",
        f"global_train_batch_size={plan.global_batch}",
        f"device_train_microbatch_size={plan.micro_batch}",
        f"scheduler.t_warmup={max(1, plan.steps // 3)}",
        "save_interval=1000000",
        "model.init_device=cpu",
        "evaluators=[]",
        "wandb=null",
        "console_log_interval=1",
        "load_policy=restart",
        *m.overrides,
    ]
    if m.fgrams:
        f = fgrams[m.fgrams]
        args += [f"model.fgram.vocab_path={f['vocab']}", f"data.fgram_tags={f['tags']}"]
        args.append(
            f"model.fgram.num_fgrams={f['rows']}"
        )  # the config's own count, as counted here
    return args


def train(m: Model, plan: Plan, args: List[str], *, steps: int, cpu: bool) -> float:
    """One 1-rank torchrun launch; ``cpu``: hidden GPUs and fp32 (the reference), else the plan's
    device in bf16. Returns the wall seconds."""
    precision = "fp32" if cpu else "amp_bf16"
    env = {"CUDA_VISIBLE_DEVICES": ""} if cpu else {}
    cmd = [*torchrun_command(1), "scripts/train.py", f"configs/olmo/{m.config}"]
    t0 = time.time()
    _run(cmd + args + [f"max_duration={steps}", f"precision={precision}"], env=env)
    return time.time() - t0


def read_metrics(folder: Path) -> List[Dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]


def training_figures(m: Model, folder: Path, ref: Path, device_name: str) -> Dict:
    """Losses, the first-step comparison, tokens/s (median after the first 3 steps) and MFU."""
    from ..accounting import account
    from ..config import SconeTrainConfig, load_config

    rows = read_metrics(folder)
    losses = [r["train/CrossEntropyLoss"] for r in rows]
    first, ref_first = losses[0], read_metrics(ref)[0]["train/CrossEntropyLoss"]
    rates = [r["throughput/device/tokens_per_second"] for r in rows[3:]] or [
        r["throughput/device/tokens_per_second"] for r in rows
    ]
    tok_s = statistics.median(rates)
    cfg = load_config(SconeTrainConfig, folder / "config.yaml")
    acc = account(cfg.model, m.name)
    head = 2 * cfg.model.d_model * cfg.model.embedding_size if cfg.model.weight_tying else 0
    flops_per_token = 3 * (acc.inference_fwd_flops_per_token + head)
    peak = next((v for k, v in PEAK_BF16.items() if k in device_name), None)
    return {
        "steps": len(losses),
        "first_loss": first,
        "first_loss_cpu_fp32": ref_first,
        "first_loss_rel_diff": abs(first - ref_first) / abs(ref_first),
        "last_loss": losses[-1],
        "all_finite": all(math.isfinite(x) for x in losses),
        "tokens_per_s": tok_s,
        "main_model_train_flops_per_token": flops_per_token,
        "mfu": None if peak is None else flops_per_token * tok_s / peak,
        "peak_gpu_mem_mb": rows[-1].get("System/Peak GPU Memory (MB)"),
    }


# ---- 3. export ----------------------------------------------------------------------------------
def export(folder: Path, out: Path) -> float:
    t0 = time.time()
    _run(
        [sys.executable, "scripts/export_embeddings.py", str(folder), "--out", str(out)]
        + ["--dtype", "bf16", "--overwrite"]
    )
    return time.time() - t0


# ---- 4. served logits ---------------------------------------------------------------------------
def held_out_chunks(tokens: Path, seq_len: int, n: int):
    import torch

    from ..serving.evaluate import chunks_from_tokens, token_streams

    chunks = chunks_from_tokens(token_streams(str(tokens), "valid"), seq_len)
    if len(chunks) < n:
        fail(f"{tokens} holds fewer than {n} held-out chunks of {seq_len} tokens")
    return torch.from_numpy(chunks[:n])


def max_rel_diff(a, b) -> float:
    """max |a - b| over max |b|: one number per comparison, scale-free."""
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def served_logits(target: Path, chunks, mode: str, device: str):
    from ..serving.runtime import load_served

    served = load_served(target, mode=mode, device=device)
    return served.logits(chunks).float().cpu()


def serving_checks(m: Model, folder: Path, art: Optional[Path], chunks, device: str) -> Dict:
    """GPU-served vs CPU-served logits (RAM and mmap table), and, for SCONE, CPU-served (table) vs
    the trained model with ``A_fgram`` live."""
    import torch

    from ..train.checkpoint import load_trained_model

    target = art if art is not None else folder
    cpu = served_logits(target, chunks, "ram", "cpu")
    out = {}
    for mode in ("ram", "mmap") if art is not None else ("ram",):
        out[f"{device}_{mode}_vs_cpu"] = max_rel_diff(
            served_logits(target, chunks, mode, device), cpu
        )
    if art is not None:
        _, model = load_trained_model(folder)
        with torch.no_grad():
            live = model(chunks, match=True).logits
        out["table_vs_live_a_fgram"] = max_rel_diff(cpu, live)
    return out


# ---- 5. decoding ----------------------------------------------------------------------------------
def decode_ms(target: Path, prompts, steps: int, device: str, rounds: int = 3) -> float:
    """ms per generated token: (time of steps+1 tokens - time of 1 token) / steps, so the prompt's
    prefill is not counted; median over rounds."""
    from ..serving.generate import generate
    from ..serving.runtime import load_served

    served = load_served(target, mode="ram", device=device)
    p = prompts.tolist()

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        generate(served, p, max_new_tokens=n)
        return time.perf_counter() - t0

    timed(2)  # warm-up: kernels, allocator, page cache
    per = [(timed(steps + 1) - timed(1)) / steps for _ in range(rounds)]
    return 1000 * statistics.median(per)


def decode_figures(pair: Dict[str, Path], tokens: Path, plan: Plan, seq_len: int) -> List[Dict]:
    rows = []
    for b in plan.decode_batches:
        prompts = held_out_chunks(tokens, 32, b)
        ms = {k: decode_ms(v, prompts, plan.decode_steps, plan.device) for k, v in pair.items()}
        rows.append(
            {
                "batch": b,
                **{f"{k}_ms": v for k, v in ms.items()},
                "scone_over_baseline": ms["scone"] / ms["baseline"],
            }
        )
    return rows


# ---- the run ----------------------------------------------------------------------------------------
def environment(device: str) -> Dict:
    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": device,
        "host": socket.gethostname(),
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        import deepspeed

        env["deepspeed"] = deepspeed.__version__
    return env


def run(plan: Plan, tokens: Path, out: Path, expected: Dict[str, str]) -> Dict:
    from ..config import load_run_config

    env = environment(plan.device)
    gpu_name = env.get("gpu", "")
    res: Dict = {
        "environment": env,
        "plan": {
            "steps": plan.steps,
            "global_batch": plan.global_batch,
            "vocab_sizes": plan.vocab_sizes,
        },
    }
    res["fgrams"] = build_fgrams(plan, tokens, out / "fgrams", expected)
    res["models"] = {}
    served: Dict[str, Path] = {}
    for m in plan.models:
        folder, ref = out / "runs" / m.name, out / "runs" / f"{m.name}-cpu-fp32"
        r: Dict = {}
        r["train_s"] = train(
            m, plan, train_args(m, plan, tokens, res["fgrams"], folder), steps=plan.steps, cpu=False
        )
        train(m, plan, train_args(m, plan, tokens, res["fgrams"], ref), steps=1, cpu=True)
        r.update(training_figures(m, folder, ref, gpu_name))
        art = None
        if m.fgrams:
            art = out / "served" / m.name
            r["export_s"] = export(folder, art)
        seq = load_run_config(folder).model.max_sequence_length
        r["logits"] = serving_checks(
            m, folder, art, held_out_chunks(tokens, seq, plan.eval_chunks), plan.device
        )
        served[m.name] = art if art is not None else folder
        res["models"][m.name] = r
        _save(res, out)  # what finished so far survives a killed job slot
    res["decode"] = decode_figures(
        {"scone": served["scone-gpt2-128m-1m"], "baseline": served["gpt2-128m"]},
        tokens,
        plan,
        load_run_config(out / "runs" / "gpt2-128m").model.max_sequence_length,
    )
    res["checks"] = checks(res)
    _save(res, out)
    return res


def checks(res: Dict) -> Dict[str, bool]:
    out = {}
    for key, f in res["fgrams"].items():
        if f["check"] is not None:
            out[f"vocabulary {key} ({f['num_fgrams']:,}) has the kit's sha256"] = f["check"]
    for name, r in res["models"].items():
        out[f"{name}: every loss finite"] = r["all_finite"]
        out[f"{name}: first loss vs CPU fp32 within {LOSS_RTOL:g}"] = (
            r["first_loss_rel_diff"] <= LOSS_RTOL
        )
        for k, v in r["logits"].items():
            tol = TABLE_TOL if k == "table_vs_live_a_fgram" else SERVED_TOL
            out[f"{name}: logits {k} within {tol:g}"] = v <= tol
    return out


def markdown(res: Dict) -> str:
    from ..markdown import table

    env = res["environment"]
    lines = [
        f"### GPU smoke: {env.get('gpu', 'CPU')} (python {env['python']}, torch {env['torch']}, "
        f"numpy {env['numpy']})",
        "",
    ]
    rows = []
    for name, r in res["models"].items():
        logits = ", ".join(f"{k} {v:.1e}" for k, v in r["logits"].items())
        rows.append(
            [
                name,
                f"{r['first_loss']:.4f}",
                f"{r['first_loss_cpu_fp32']:.4f}",
                f"{r['last_loss']:.3f}",
                f"{r['tokens_per_s']:,.0f}",
                "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
                f"{r.get('export_s', 0):.0f} s" if "export_s" in r else "-",
                logits,
            ]
        )
    lines.append(
        table(
            rows,
            [
                "model",
                "first loss",
                "CPU fp32 first loss",
                "last loss",
                "train tokens/s",
                "MFU (main model)",
                "export",
                "served logits, max rel diff",
            ],
        )
    )
    lines += [
        "",
        table(
            [
                [
                    d["batch"],
                    f"{d['scone_ms']:.2f}",
                    f"{d['baseline_ms']:.2f}",
                    f"{d['scone_over_baseline']:.2f}x",
                ]
                for d in res["decode"]
            ],
            ["batch", "SCONE ms/token", "baseline ms/token", "SCONE / baseline"],
        ),
    ]
    f = res["fgrams"]
    lines += [
        "",
        "f-grams: "
        + "; ".join(
            f"{k} {v['num_fgrams']:,} counted in {v['count_s']} s, tagged in {v['tag_s']} s"
            + (
                ""
                if v["check"] is None
                else f", sha256 {'equal to' if v['check'] else 'DIFFERENT from'} the kit's"
            )
            for k, v in f.items()
        ),
    ]
    failed = [k for k, ok in res["checks"].items() if not ok]
    lines += [
        "",
        f"checks: {len(res['checks']) - len(failed)}/{len(res['checks'])} passed"
        + ("" if not failed else "; FAILED: " + "; ".join(failed)),
    ]
    return "\n".join(lines) + "\n"


def _save(res: Dict, out: Path) -> None:
    atomic_write_json(out / "gpu_smoke.json", res)


def _run(cmd: List[str], env: Optional[Dict[str, str]] = None) -> None:
    r = subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if r.returncode != 0:
        lines = (r.stdout + r.stderr).strip().splitlines()
        said = [x for x in lines if x.startswith("error:")] or lines[-5:]
        fail(f"smoke step failed (exit {r.returncode}): {said[-1]} [{' '.join(cmd)[:200]} ...]")


def kit_expectations(kit: Optional[Path]) -> tuple[Optional[Path], Dict[str, str]]:
    """The kit's token directory and recorded vocabulary sha256 (none without a kit)."""
    if kit is None:
        return None, {}
    manifest = kit / "manifest.json"
    if not manifest.is_file():
        fail(f"{manifest} not found: build the kit with `make gpu-kit` and copy the whole folder")
    m = json.loads(manifest.read_text())
    return kit / m["tokens"], m["vocab_sha256"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="gpu_smoke", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="run on the GPU (cuda) or rehearse on the CPU",
    )
    p.add_argument("--kit", type=Path, default=None, help="the kit folder (make gpu-kit)")
    p.add_argument(
        "--tokens",
        type=Path,
        default=None,
        help="a token directory instead of the kit's (the CPU mode's tests)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the smoke run's outputs and report"
    )
    a = p.parse_args(argv)
    tokens, expected = kit_expectations(a.kit)
    tokens = a.tokens or tokens
    if tokens is None:
        fail("give --kit DIR (or --tokens DIR)")
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device here (use --device cpu for the CPU rehearsal)")
    plan = plan_for(a.device)
    if a.tokens is not None:  # another corpus: the kit's sha256 are not its vocabularies'
        expected = {}
    a.out.mkdir(parents=True, exist_ok=True)
    res = run(plan, tokens, a.out, expected)
    md = markdown(res)
    atomic_write_text(a.out / "gpu_smoke.md", md)
    print(md)
    return 0 if all(res["checks"].values()) else 1


if __name__ == "__main__":
    from ..errors import run_cli

    run_cli(main)
