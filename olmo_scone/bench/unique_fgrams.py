"""``scripts/benchmark_unique_fgrams.py``: how many unique f-grams a training batch holds, and what
``A_fgram`` then costs against the main model, from real text.

Only a batch's unique f-grams run through ``A_fgram``, so its training cost is U x (FLOPs of
``A_fgram`` over K tokens), not N x that (N tokens a batch; the accounting's "bound" column assumes
no sharing). U depends on N and S. This measures U on the real corpora here (english-mix + the
embedded corpus, ~12.6M tokens): random training instances of ``--seq`` tokens, matched within each
instance (what training, evaluation and serving see), for S = the top-S prefixes of one vocabulary
counted from the same text, at several batch sizes; fits ``log U = c + a log N + b log S`` by least
squares and extrapolates to the paper's batch (2048 x 2048 tokens) and S (10M, 100M, 1B). The
extrapolation reaches far beyond the measured range (S here tops out where n-grams stop occurring 5
times in 12.6M tokens): it is a model, stated as such. It also times the host-side batch builder
(``TrainBatches.micro_batches``: sidecar rows, the re-match at instance starts, ``FgramBatch``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentParser, positive_int
from .common import machine, prepared_real_text, table


def measure_unique(manifest, vocab, sizes: List[int], batches: List[int], seq: int, repeats: int, seed: int) -> List[Dict]:
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import FgramVocab

    stream = np.concatenate([np.asarray(m, dtype=np.int64) for m in manifest.memmaps("train")])
    n_inst = len(stream) // seq
    instances = stream[: n_inst * seq].reshape(n_inst, seq)
    rng = np.random.default_rng(seed)
    out = []
    for s in sizes:
        top = FgramVocab(vocab.tokens[:s], vocab.lengths[:s], vocab.counts[:s], {})  # the top-S prefix (rank order)
        matcher = FgramMatcher(top, int(manifest.tokenizer["vocab_size"]))
        for b in batches:
            if b > n_inst:
                continue
            u, m = [], []
            for _ in range(repeats):
                rows = matcher.match_batch(instances[rng.choice(n_inst, size=b, replace=False)])
                hit = rows[rows >= 0]
                u.append(len(np.unique(hit)))
                m.append(len(hit))
            out.append({"S": s, "B": b, "N": b * seq, "U": float(np.mean(u)), "matched": float(np.mean(m))})
    return out


def fit(points: List[Dict]) -> Dict:
    """Least squares of log U on log N and log S (points with U >= 10)."""
    pts = [p for p in points if p["U"] >= 10]
    x = np.array([[1.0, np.log(p["N"]), np.log(p["S"])] for p in pts])
    y = np.log([p["U"] for p in pts])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = x @ coef
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    return {"c": float(coef[0]), "a": float(coef[1]), "b": float(coef[2]), "r2": float(r2),
            "max_rel_err": float(np.max(np.abs(np.exp(pred - y) - 1))), "points": len(pts)}  # fmt: skip


def predict(f: Dict, n: float, s: float) -> float:
    return float(min(n, np.exp(f["c"] + f["a"] * np.log(n) + f["b"] * np.log(s))))


def flops_ratio(config: str, u: float, n: float) -> Dict:
    """Training FLOPs of SCONE over its baseline per batch: 1 + U x A_fgram-per-f-gram / (N x main-per-token)
    (forward; backward scales both alike), against the no-sharing bound (U = N)."""
    from ..accounting import account
    from ..config import load_model_config

    a = account(load_model_config(config))
    per_fgram = a.training_fwd_flops_per_token - a.inference_fwd_flops_per_token
    main = a.inference_fwd_flops_per_token
    return {"expected": 1 + u * per_fgram / (n * main), "bound": 1 + per_fgram / main}


def batch_builder_ms(manifest_root: Path, vocab_path: Path, tags: Path, seq: int, micro: int, per_rank: int) -> Dict:
    from ..fgrams.vocab import load_vocab
    from ..train.data import TrainBatches

    tb = TrainBatches(manifest_root, seq, per_rank, micro, 1, 0, seed=0, tags_dir=tags, vocab=load_vocab(vocab_path))
    tb.micro_batches(0)  # matcher built, memmaps open
    t = time.perf_counter()
    steps = 20
    for s in range(1, steps + 1):
        tb.micro_batches(s)
    ms = (time.perf_counter() - t) * 1e3 / steps
    return {"ms_per_step": ms, "tokens": per_rank * seq, "us_per_token": ms * 1e3 / (per_rank * seq)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="benchmark_unique_fgrams.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/olmo-scone-unique-bench"), help="token files and vocabulary (kept)")
    p.add_argument("--sizes", nargs="+", type=positive_int, default=[1_000, 3_000, 10_000, 30_000, 100_000, 300_000])
    p.add_argument("--batches", nargs="+", type=positive_int, default=[1, 4, 16, 64, 256, 1024])
    p.add_argument("--seq", type=positive_int, default=2048)
    p.add_argument("--repeats", type=positive_int, default=3)
    a = p.parse_args(argv)
    from ..fgrams.vocab import load_vocab
    from .common import build_vocab

    print(machine())
    manifest = prepared_real_text(a.work / "tokens")
    vpath = a.work / f"fgrams-{max(a.sizes)}.safetensors"
    if not vpath.is_file():
        tok = manifest.tokenizer
        build_vocab([str(x) for x in manifest.token_files("train")], manifest.dtype.name, tok["vocab_size"],
                    tok["eos_token_id"], tok["pad_token_id"], max(a.sizes), 5, vpath, 8.0)  # fmt: skip
    vocab = load_vocab(vpath, verify=False)
    sizes = [s for s in a.sizes if s <= len(vocab)]
    print(f"corpus: {manifest.num_tokens('train'):,} train tokens; vocabulary: {len(vocab):,} f-grams (count >= 5)")
    points = measure_unique(manifest, vocab, sizes, a.batches, a.seq, a.repeats, seed=0)
    print(table([[f"{p['S']:,}", p["B"], f"{p['N']:,}", f"{p['matched']:,.0f}", f"{p['U']:,.0f}", f"{p['U'] / p['N']:.4f}"]
                 for p in points], ["S", "sequences", "tokens N", "matched positions", "unique f-grams U", "U / N"]))  # fmt: skip
    f = fit(points)
    print(f"\nfit over {f['points']} points: U = exp({f['c']:.3f}) * N^{f['a']:.3f} * S^{f['b']:.3f}  "
          f"(R^2 {f['r2']:.4f}, largest relative error {f['max_rel_err']:.1%})")  # fmt: skip
    n_paper = 2048 * 2048
    rows = []
    for s in (10_000_000, 100_000_000, 1_000_000_000):
        u = predict(f, n_paper, s)
        for cfg in ("configs/olmo/scone-1b-10m-a0.6b.yaml", "configs/olmo/scone-1b-10m-a1.8b.yaml"):
            r = flops_ratio(cfg, u, n_paper)
            rows.append([f"{s:,}", Path(cfg).stem.split("-")[-1], f"{u:,.0f}", f"{u / n_paper:.3f}",
                         f"{r['expected']:.2f}x", f"{r['bound']:.2f}x"])  # fmt: skip
    tags = a.work / f"tags-{len(vocab)}"
    if not (tags / "fgram_tags.json").is_file():
        from ..data.sources import open_token_files
        from ..fgrams.tagging import tag_token_files

        tag_token_files(open_token_files(str(manifest.root), "train"), vocab, vpath, tags)
    for seq, micro, per_rank in ((128, 16, 16), (a.seq, 4, 8)):
        r = batch_builder_ms(manifest.root, vpath, tags, seq, micro, per_rank)
        print(f"host-side batch building (S = {len(vocab):,}, {per_rank} x {seq} tokens a rank a step): "
              f"{r['ms_per_step']:.1f} ms a step, {r['us_per_token']:.2f} us a token")  # fmt: skip
    print(f"\nextrapolated to the paper's batch (2048 x 2048 = {n_paper:,} tokens), OLMo-1B main model:")
    print(table(rows, ["S", "A_fgram", "U (model)", "U / N", "training FLOPs vs baseline (expected)",
                       "(bound: no sharing)"]))  # fmt: skip
    return 0
