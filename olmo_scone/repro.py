"""``make repro-cpu``: a CPU-scale reproduction of the paper's findings on real text.

The study (all runs share the seed, data order, optimizer and token budget):

* data: ``../shared/data/english-mix`` (six genres of real English, ~5M tokens) tokenized with
  ``dolma tokens``; 2% of the documents held out;
* main models: ``m`` (d 128, 2 layers, seq 128) and ``2m`` (4 layers: twice the non-embedding
  parameters); both baselines are trained;
* SCONE with main model ``m``: f-gram counts 50K / 200K / 800K with ``A_fgram`` of 1x m's
  non-embedding parameters, and ``A_fgram`` 0.5x / 2x at 200K f-grams (1 / 2 / 4 layers of the
  same width);
* evaluation through the serving runtime (SCONE from its exported bf16 table, ``A_fgram``
  dropped) on two held-out corpora: WikiText-103 validation (``wikitext/wiki.valid.tokens``) and
  the held-out english-mix documents.

Every stage writes a file and is skipped when that file exists, so an interrupted study resumes.
``--print`` shows the commands; ``--steps`` sets the budget. The report (tables, plots and the
exact commands) goes to ``docs/results.md`` and ``docs/results-*.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .bench.common import REPO, SHARED_DATA
from .errors import fail

PY = sys.executable
TORCHRUN = str(Path(PY).parent / "torchrun")
# Sized by measurement: at d 256 training ran at ~780 tokens/s on this 2-core machine (the 50K-row
# output layer dominates), which would make the study take ~12 h; at d 128 it is ~1.4K tokens/s and
# 7 runs of 500 steps x 4,096 tokens finish in about 3 hours.
D_MODEL, HEADS, LAYERS_M, SEQ = 128, 4, 2, 128
FGRAM_COUNTS = [50_000, 200_000, 800_000]
A_LAYERS = {"0.5x": 1, "1x": 2, "2x": 4}
SEED = 6198


def runs() -> List[Dict]:
    """The study's runs: name, main layers, f-grams (0: baseline), A_fgram layers."""
    out = [{"name": "baseline-m", "layers": LAYERS_M, "fgrams": 0, "a": None},
           {"name": "baseline-2m", "layers": 2 * LAYERS_M, "fgrams": 0, "a": None}]  # fmt: skip
    for s in FGRAM_COUNTS:
        out.append({"name": f"scone-m-{s // 1000}k-a1x", "layers": LAYERS_M, "fgrams": s, "a": "1x"})
    for a in ("0.5x", "2x"):
        out.append({"name": f"scone-m-200k-a{a}", "layers": LAYERS_M, "fgrams": 200_000, "a": a})
    return out


def train_command(root: Path, data: Path, steps: int, r: Dict) -> tuple[str, List[str]]:
    """The config and the key=value overrides of one run of the study."""
    cfg = "configs/olmo/tiny-scone.yaml" if r["fgrams"] else "configs/olmo/tiny-baseline.yaml"
    args = [f"save_folder={root / r['name']}", f"run_name={r['name']}", f"wandb.name={r['name']}", "wandb.group=repro-cpu",
            f"seed={SEED}", f"data.tokens_dir={data}", f"max_duration={steps}", "global_train_batch_size=32",
            "device_train_microbatch_size=8", f"eval_interval={max(1, steps // 8)}", "save_interval=1000000",
            f"scheduler.t_warmup={max(1, steps // 20)}", "optimizer.learning_rate=0.002",
            f"model.d_model={D_MODEL}", f"model.n_heads={HEADS}", f"model.n_layers={r['layers']}",
            f"model.max_sequence_length={SEQ}", "evaluators=[{label: valid, type: lm, subset_num_batches: 25}]"]  # fmt: skip
    if r["fgrams"]:
        k = r["fgrams"] // 1000
        args += [f"model.fgram.vocab_path={root}/fgrams-{k}k.safetensors", f"data.fgram_tags={root}/tags-{k}k",
                 f"model.fgram.n_layers={A_LAYERS[r['a']]}", f"model.fgram.n_heads={HEADS}"]  # fmt: skip
    return cfg, args


class Study:
    def __init__(self, root: Path, steps: int, dry: bool):
        self.root, self.steps, self.dry = root, steps, dry
        self.data = root / "data"
        self.log: List[str] = []

    def sh(self, cmd: List[str], done: Optional[Path] = None) -> None:
        line = " ".join(shlex.quote(c) for c in cmd)
        self.log.append(line)
        if done is not None and done.exists():
            print(f"# done: {done}", flush=True)
            return
        print(line, flush=True)
        if not self.dry:
            r = subprocess.run(cmd, cwd=REPO)
            if r.returncode != 0:
                fail(f"study step failed (exit {r.returncode}): {line[:200]}")

    def prepare(self) -> None:
        mix = SHARED_DATA / "english-mix"
        if not mix.is_dir():
            fail(f"{mix} not found: the reproduction study needs ../shared/data (OLMO_SCONE_SHARED_DATA=...)")
        self.sh([PY, "scripts/prepare_data.py", str(mix / "*.jsonl.gz"), "--valid-fraction", "0.02", "--out", str(self.data)],
                self.data / "manifest.json")  # fmt: skip
        for s in sorted({r["fgrams"] for r in runs() if r["fgrams"]}):
            vocab, tags = self.root / f"fgrams-{s // 1000}k.safetensors", self.root / f"tags-{s // 1000}k"
            self.sh([PY, "scripts/build_fgrams.py", "--tokens", str(self.data), "--num-fgrams", str(s), "--out", str(vocab)], vocab)
            self.sh([PY, "scripts/tag_fgrams.py", "--vocab", str(vocab), "--tokens", str(self.data), "--out", str(tags)],
                    tags / "fgram_tags.json")  # fmt: skip

    def train(self, r: Dict) -> Path:
        folder = self.root / r["name"]
        cfg, args = train_command(self.root, self.data, self.steps, r)
        resume = ["--resume"] if (folder / "latest").is_file() and not (folder / "DONE").exists() else []
        self.sh([TORCHRUN, "--nproc_per_node=2", "scripts/train.py", cfg, *args, *resume], folder / "DONE")
        if not self.dry and not (folder / "DONE").exists():
            (folder / "DONE").write_text("ok\n")
        if not r["fgrams"]:
            return folder
        art = self.root / f"{r['name']}-served"
        self.sh([PY, "scripts/export_embeddings.py", str(folder), "--out", str(art), "--dtype", "bf16"], art / "manifest.json")
        return art

    def evaluate(self, r: Dict, model: Path) -> None:
        wiki = SHARED_DATA / "wikitext" / "wiki.valid.tokens"
        for name, flags in (("wikitext103-valid", ["--text", str(wiki)]), ("english-mix-valid", ["--tokens", str(self.data)])):
            out = self.root / r["name"] / f"eval-{name}.json"
            self.sh([PY, "scripts/evaluate.py", str(model), "--table", "mmap", *flags, "--out", str(out)], out)


def collect(root: Path) -> List[Dict]:
    from .accounting import account
    from .config import SconeTrainConfig, load_config

    rows = []
    for r in runs():
        folder = root / r["name"]
        evals = {}
        for name in ("wikitext103-valid", "english-mix-valid"):
            p = folder / f"eval-{name}.json"
            if p.is_file():
                evals[name] = json.loads(p.read_text())["perplexity"]
        if len(evals) < 2 or not (folder / "config.yaml").is_file():
            continue
        cfg = load_config(SconeTrainConfig, folder / "config.yaml")
        acc = account(cfg.model, r["name"], r["fgrams"] or None)
        rows.append({**r, **evals, "resident_params": acc.main_params, "non_embedding": acc.main_non_embedding_params,
                     "a_fgram_params": acc.fgram_model_params, "flops_per_token": acc.inference_fwd_flops_per_token})  # fmt: skip
    return rows


def report(root: Path, rows: List[Dict], log: List[str], steps: int, out_md: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_file, atomic_write_text
    from .bench.common import table
    from .plotting import plot_runs

    body = [[r["name"], f"{r['non_embedding'] / 1e6:.2f}M", f"{r['resident_params'] / 1e6:.2f}M",
             f"{r['a_fgram_params'] / 1e6:.2f}M" if r["fgrams"] else "-", f"{r['fgrams']:,}" if r["fgrams"] else "-",
             f"{r['flops_per_token'] / 1e6:.1f}M", f"{r['wikitext103-valid']:.2f}", f"{r['english-mix-valid']:.2f}"]
            for r in rows]  # fmt: skip
    tbl = table(body, ["run", "non-emb params", "resident params", "A_fgram", "f-grams", "inference FLOPs/token",
                       "WikiText-103 valid ppl", "english-mix held-out ppl"])  # fmt: skip
    by = {r["name"]: r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "fgrams", "number of f-grams (A_fgram 1x)"), (axes[1], "a", "A_fgram size (200K f-grams)")):
        pts = [r for r in rows if r["fgrams"] and (r["a"] == "1x" if key == "fgrams" else r["fgrams"] == 200_000)]
        xs = [r["fgrams"] if key == "fgrams" else float(r["a"][:-1]) for r in pts]
        order = sorted(range(len(xs)), key=xs.__getitem__)
        for corpus, style in (("wikitext103-valid", "o-"), ("english-mix-valid", "s-")):
            ax.plot([xs[i] for i in order], [pts[i][corpus] for i in order], style, label=f"SCONE-m, {corpus}")
            for b, ls in (("baseline-m", "--"), ("baseline-2m", ":")):
                if b in by:
                    ax.axhline(by[b][corpus], ls=ls, lw=1, color="C0" if corpus.startswith("wiki") else "C1",
                               label=f"{b}, {corpus}")  # fmt: skip
        ax.set(xscale="log" if key == "fgrams" else "linear", title=title, ylabel="perplexity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    png = out_md.parent / "results-cpu-scaling.png"
    with atomic_file(png, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    curves = plot_runs([root / r["name"] for r in rows], out_md.parent / "results-cpu-curves.png", title="repro-cpu training curves")
    text = (f"## CPU reproduction ({steps} steps x 32 x {SEQ} tokens per run, seed {SEED})\n\n{tbl}\n\n"
            f"![scaling]({png.name})\n\n![curves]({curves.name})\n\n### Commands\n\n```\n" + "\n".join(log) + "\n```\n")
    atomic_write_text(root / "results.md", text)
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="repro.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO / "runs" / "repro-cpu")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--only", nargs="*", help="run names to train/evaluate (default: all)")
    p.add_argument("--print", dest="dry", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)
    study = Study(a.root, a.steps, a.dry)
    study.prepare()
    for r in runs():
        if a.only and r["name"] not in a.only:
            continue
        model = study.train(r)
        study.evaluate(r, model)
    if a.dry:
        return 0
    rows = collect(a.root)
    print(report(a.root, rows, study.log, a.steps, REPO / "docs" / "results.md"))
    return 0
