"""``scripts/benchmark_export.py``: export throughput, the real ``export_model`` path, per config.

``A_fgram`` runs once over every f-gram at export; at the paper's 1B f-grams and a 1.8B ``A_fgram``
that is ~1.8e19 FLOPs, so rows/s and achieved FLOP/s decide how many ranks an export needs. The
benchmark builds the config's SCONE model with random weights over a vocabulary of real f-grams
(counted from real text; throughput depends on K and the model, not on which f-grams they are),
and times ``export_model`` (A_fgram in batches, quantize, write shards) at each thread count in a
fresh process. FLOPs per row are the accounting's (``A_fgram`` over K tokens: 2 x non-embedding
parameters x K + attention). Projection to N ranks assumes ranks do not share cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import ArgumentParser, positive_int
from .common import isolated, machine, table


def _export_rate(config: str, vocab_path: str, rows: int, threads: int, batch_size: int) -> Dict:
    import torch

    from ..accounting import account
    from ..config import SconeTrainConfig, load_config
    from ..export import export_model
    from ..fgrams.vocab import FgramVocab, load_vocab
    from ..model import SconeOLMo

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    v = load_vocab(vocab_path)
    v = FgramVocab(v.tokens[:rows], v.lengths[:rows], v.counts[:rows], dict(v.metadata))
    cfg = load_config(SconeTrainConfig, config, ["wandb=null"])
    cfg.model.init_device = "cpu"
    cfg.model.fgram.vocab_path = None
    cfg.model.fgram.num_fgrams = None
    model = SconeOLMo(cfg.model, fgram_vocab=v).eval()
    a = account(cfg.model, num_fgrams=len(v))
    flops_per_row = a.training_fwd_flops_per_token - a.inference_fwd_flops_per_token
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        export_model(
            model, cfg, None, Path(d) / "out", dtype="bf16", batch_size=batch_size, source="bench"
        )
        dt = time.perf_counter() - t0
    return {
        "rows": len(v),
        "seconds": dt,
        "rows_per_s": len(v) / dt,
        "gflops_per_row": flops_per_row / 1e9,
        "gflop_per_s": len(v) * flops_per_row / dt / 1e9,
        "fgram_params": a.fgram_model_params,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="benchmark_export.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--vocab", required=True, help="an f-gram vocabulary of real f-grams (build_fgrams.py)"
    )
    p.add_argument(
        "--configs",
        nargs="+",
        default=["configs/olmo/tiny-scone.yaml", "configs/olmo/scone-gpt2-128m-1m.yaml"],
        help="training configs whose export is timed (one model each)",
    )
    p.add_argument(
        "--rows",
        nargs="+",
        type=positive_int,
        default=[20000, 2000],
        help="rows per config (same order)",
    )
    p.add_argument(
        "--threads",
        nargs="+",
        type=positive_int,
        default=[1, 2],
        help="torch thread counts to time the export with",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=1024, help="f-grams per A_fgram forward batch"
    )
    a = p.parse_args(argv)
    print(machine())
    out: List[List] = []
    for config, rows in zip(a.configs, a.rows + a.rows[-1:] * len(a.configs)):
        for t in a.threads:
            r = isolated(_export_rate, config, a.vocab, rows, t, a.batch_size)["result"]
            out.append(
                [
                    Path(config).stem,
                    f"{r['fgram_params'] / 1e6:.1f}M",
                    t,
                    f"{r['rows']:,}",
                    f"{r['seconds']:.2f}",
                    f"{r['rows_per_s']:,.0f}",
                    f"{r['gflops_per_row']:.3f}",
                    f"{r['gflop_per_s']:.1f}",
                ]
            )
    print(
        table(
            out,
            [
                "config",
                "A_fgram params",
                "threads",
                "rows",
                "s",
                "rows/s",
                "GFLOP/row",
                "achieved GFLOP/s",
            ],
        )
    )
    return 0
