"""The last stage of ``make demo``: serve both trained models, compare them, draw their curves.

The earlier stages (data, f-grams, tags, the two training runs, the export) are Make targets; this
one takes their outputs, evaluates the baseline checkpoint and the SCONE serving artifact on the
held-out split *through the serving runtime* (the same code path as ``scripts/evaluate.py``),
continues one prompt with each, and writes ``report.md`` and ``curves.png`` beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import ArgumentParser, fail

DEFAULT_PROMPT = "The best way to learn a new language is"
# nanoGPT-style seeded sampling: a 100-step model's greedy continuation is one token repeated,
# which says nothing about either model; a fixed seed keeps the report reproducible
SAMPLING = {"temperature": 0.8, "top_k": 40, "seed": 0}


def evaluate_models(
    models: Dict[str, Path],
    tokens: Path,
    split: str = "valid",
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 24,
    max_batches: Optional[int] = None,
    sampling: Optional[Dict] = None,
) -> List[Dict]:
    """One row per model: resident parameters, FLOPs/token, table size, held-out perplexity, a continuation."""
    from ..accounting import account
    from ..serving.cli import tokenizer_for, tokenizer_name
    from ..serving.evaluate import chunks_from_tokens, perplexity, token_streams
    from ..serving.generate import generate
    from ..serving.runtime import load_served
    from ..serving.table import table_disk_bytes

    sampling = SAMPLING if sampling is None else sampling
    rows = []
    for name, path in models.items():
        served = load_served(path, mode="mmap")
        cfg = served.cfg
        streams = token_streams(
            str(tokens), split, tokenizer_name(cfg)
        )  # refuses another tokenizer's files
        seq = cfg.model.max_sequence_length
        ppl = perplexity(
            served, chunks_from_tokens(streams, seq), batch_size=16, max_batches=max_batches
        )
        acc = account(cfg.model, name, len(served.table) if served.table is not None else None)
        tok = tokenizer_for(cfg)
        ids = tok.encode(prompt, add_special_tokens=False)
        cont = generate(
            served, [ids], max_new_tokens, eos_token_id=cfg.model.eos_token_id, **sampling
        )[0]
        rows.append(
            {
                "model": name,
                "path": str(path),
                "resident_params": acc.main_params,
                "non_embedding_params": acc.main_non_embedding_params,
                "fwd_flops_per_token": acc.inference_fwd_flops_per_token,
                "fgrams": len(served.table) if served.table is not None else 0,
                "table_gb": table_disk_bytes(Path(path)) / 1e9 if served.table is not None else 0.0,
                "table_dtype": served.table.dtype if served.table is not None else None,
                "perplexity": ppl["perplexity"],
                "eval_tokens": ppl["tokens"],
                "prompt": prompt,
                "continuation": tok.decode(cont),
                "sampling": sampling,
            }
        )
    return rows


def render(rows: List[Dict]) -> str:
    from ..markdown import table

    body = [
        [
            r["model"],
            f"{r['resident_params'] / 1e6:.2f}M",
            f"{r['fwd_flops_per_token'] / 1e6:.2f}M",
            f"{r['fgrams']:,} x {r['table_dtype']} = {r['table_gb'] * 1e3:.1f} MB"
            if r["fgrams"]
            else "-",
            f"{r['perplexity']:.2f}",
        ]
        for r in rows
    ]
    out = [
        table(
            body,
            [
                "model",
                "accelerator-resident params",
                "inference FLOPs/token",
                "f-gram table (host)",
                f"held-out perplexity ({rows[0]['eval_tokens']:,} tokens)",
            ],
        )
    ]
    s = rows[0]["sampling"]
    how = (
        "greedy"
        if s.get("temperature", 0) <= 0
        else ", ".join(f"{k.replace('_', '-')} {v}" for k, v in s.items())
    )
    out.append("")
    out.append(f"continuations ({how}):")
    for r in rows:
        out.append(f"{r['model']}: {r['prompt']!r} -> {r['continuation']!r}")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..atomic import atomic_write_json, atomic_write_text
    from ..plotting import plot_runs

    p = ArgumentParser(prog="demo_report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="the baseline's save_folder")
    p.add_argument(
        "--scone", type=Path, required=True, help="the SCONE run's save_folder (for its curve)"
    )
    p.add_argument("--artifact", type=Path, required=True, help="the SCONE serving artifact")
    p.add_argument(
        "--tokens", type=Path, required=True, help="token directory with the held-out split"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="directory for report.md, report.json, curves.png"
    )
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt for the demo's generation")
    p.add_argument(
        "--max-batches",
        type=int,
        default=40,
        help="held-out batches of 16 sequences (0: the whole split)",
    )
    a = p.parse_args(argv)
    for what, path in (
        ("--baseline", a.baseline),
        ("--scone", a.scone),
        ("--artifact", a.artifact),
        ("--tokens", a.tokens),
    ):
        if not path.exists():
            fail(f"{what} {path} does not exist (run the earlier demo stages first: make demo)")
    rows = evaluate_models(
        {"baseline": a.baseline, "SCONE": a.artifact},
        a.tokens,
        prompt=a.prompt,
        max_batches=a.max_batches or None,
    )
    png = plot_runs(
        [a.baseline, a.scone],
        a.out / "curves.png",
        title="make demo: baseline vs SCONE (same main model)",
    )
    text = render(rows)
    atomic_write_json(a.out / "report.json", rows)
    atomic_write_text(
        a.out / "report.md", "# make demo\n\n" + text + f"\n\n![curves]({png.name})\n"
    )
    print("\n" + text)
    print(f"\ncurves: {png}\nreport: {a.out / 'report.md'}")
    return 0
