"""Loss and perplexity curves of training runs (their ``metrics.jsonl``), several runs in one PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from .errors import ArgumentParser, fail


def read_metrics(run_dir: str | Path) -> List[Dict]:
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        fail(f"{run_dir} has no metrics.jsonl (is it a save_folder of scripts/train.py?)")
    by_step: Dict[int, Dict] = {}
    for line in p.read_text().splitlines():
        if line.strip():
            m = json.loads(line)
            by_step[m["step"]] = m  # a resumed run rewrites the steps after its checkpoint
    return [by_step[k] for k in sorted(by_step)]


def train_loss(m: Dict) -> float:
    """A step's training loss: OLMo's name, or the one run folders made before it was adopted."""
    return m["train/CrossEntropyLoss"] if "train/CrossEntropyLoss" in m else m["train/loss"]


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metric: str = "eval/valid/Perplexity",
    title: str = "",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_file

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in run_dirs:
        ms = read_metrics(run)
        name = Path(run).name
        axes[0].plot([m["tokens"] for m in ms], [train_loss(m) for m in ms], label=name, lw=1)
        ev = [m for m in ms if metric in m]
        if ev:
            axes[1].plot(
                [m["tokens"] for m in ev], [m[metric] for m in ev], marker="o", ms=3, label=name
            )
    axes[0].set(xlabel="tokens", ylabel="train loss", title="training loss")
    axes[1].set(
        xlabel="tokens", ylabel=metric.split("/")[-1], title=f"{metric} (held out)", yscale="log"
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = ArgumentParser(prog="plot_curves.py", description=__doc__)
    p.add_argument("runs", nargs="+", help="save folders of training runs")
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument(
        "--metric",
        default="eval/valid/Perplexity",
        help="metric to plot from each run's metrics.jsonl",
    )
    p.add_argument("--title", default="", help="plot title")
    a = p.parse_args(argv)
    print(plot_runs(a.runs, a.out, a.metric, a.title))
    return 0
