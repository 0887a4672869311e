"""``scripts/benchmark_unique_fgrams.py``: how many unique f-grams a training batch holds, and what
``A_fgram`` then costs against the main model, from real text.

Only a batch's unique f-grams run through ``A_fgram``, so its training cost is U x (FLOPs of
``A_fgram`` over K tokens), not N x that (N tokens a batch; the accounting's "bound" column assumes
no sharing). U depends on N and S. This measures U on the real corpora here (english-mix + the
embedded corpus, ~12.6M tokens): random training instances of ``--seq`` tokens, matched within each
instance (what training, evaluation and serving see), for S = the top-S prefixes of one vocabulary
counted from the same text, at several batch sizes.

The model (occupancy): if f-gram r is the longest match at a fraction ``p_r`` of positions, a batch
of N tokens holds ``U(N, S) = sum_{r <= S} (1 - exp(-N p_r))`` distinct f-grams. With ``p_r`` taken
from the corpus (longest-match counts of each top-S vocabulary over all 12.6M tokens) it is checked
against every measured point. To extrapolate to the paper's batch (2048 x 2048 tokens) and S (10M,
100M, 1B), ``p_r`` is extended past the measured ranks by a Zipf law ``p_r = A r^-alpha`` fitted on
the largest vocabulary's tail; that reaches far beyond what 12.6M tokens can show (and assumes the
tail's slope holds to rank 1B), so it is a model, stated as such. It also times the host-side batch builder
(``TrainBatches.micro_batches``: sidecar rows, the re-match at instance starts, ``FgramBatch``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentParser, positive_int
from .common import machine, table


def measure_unique(
    manifest, vocab, sizes: List[int], batches: List[int], seq: int, repeats: int, seed: int
) -> List[Dict]:
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import FgramVocab

    stream = np.concatenate([np.asarray(m, dtype=np.int64) for m in manifest.memmaps("train")])
    n_inst = len(stream) // seq
    instances = stream[: n_inst * seq].reshape(n_inst, seq)
    rng = np.random.default_rng(seed)
    out = []
    for s in sizes:
        top = FgramVocab(
            vocab.tokens[:s], vocab.lengths[:s], vocab.counts[:s], {}
        )  # the top-S prefix (rank order)
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
            out.append(
                {"S": s, "B": b, "N": b * seq, "U": float(np.mean(u)), "matched": float(np.mean(m))}
            )
    return out


def match_rates(manifest, vocab, sizes: List[int]) -> Dict[int, np.ndarray]:
    """``p_r`` for each top-S vocabulary: the fraction of the corpus's positions whose longest match
    (within documents) is f-gram r."""
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import FgramVocab

    stream = np.concatenate([np.asarray(m, dtype=np.int64) for m in manifest.memmaps("train")])
    out = {}
    for s in sizes:
        top = FgramVocab(vocab.tokens[:s], vocab.lengths[:s], vocab.counts[:s], {})
        rows, _ = FgramMatcher(top, int(manifest.tokenizer["vocab_size"])).match(stream)
        out[s] = np.bincount(rows[rows >= 0], minlength=s) / len(stream)
    return out


def occupancy(p: np.ndarray, n: float) -> float:
    """Expected distinct f-grams among n positions when f-gram r ends a position with probability p_r."""
    return float(np.sum(-np.expm1(-n * p)))


def zipf_fit(p: np.ndarray, lo: int) -> Dict:
    """``log p_r = log A - alpha log r`` by least squares over ranks ``lo..len(p)`` (rates sorted
    descending, zeros dropped)."""
    q = np.sort(p)[::-1]
    q = q[q > 0]
    r = np.arange(1, len(q) + 1, dtype=np.float64)
    sel = slice(lo, len(q))
    alpha, log_a = np.polyfit(np.log(r[sel]), np.log(q[sel]), 1)
    return {"A": float(np.exp(log_a)), "alpha": float(-alpha), "measured": q, "lo": lo}


def extrapolated_unique(alpha: float, n: float, s: int, matched: float) -> float:
    """Occupancy at S f-grams whose match rates follow the measured Zipf shape ``r^-alpha``,
    normalised so they sum to the matched fraction ``matched`` (rates are shares of positions:
    with alpha < 1 an unnormalised tail would sum past 1). Summed over log-spaced rank bins, exact
    (width 1) at small ranks."""
    edges = np.unique(np.geomspace(1, s + 1, 20000).astype(np.int64))
    width = (edges[1:] - edges[:-1]).astype(np.float64)
    mid = np.sqrt(edges[:-1] * edges[1:].astype(np.float64))
    shape = mid**-alpha
    p = matched * shape / np.sum(width * shape)
    return float(min(np.sum(width * -np.expm1(-n * p)), matched * n))


def flops_ratio(config: str, u: float, n: float) -> Dict:
    """Training FLOPs of SCONE over its baseline per batch: 1 + U x A_fgram-per-f-gram / (N x main-per-token)
    (forward; backward scales both alike), against the no-sharing bound (U = N)."""
    from ..accounting import account
    from ..config import load_model_config

    a = account(load_model_config(config))
    per_fgram = a.training_fwd_flops_per_token - a.inference_fwd_flops_per_token
    main = a.inference_fwd_flops_per_token
    return {"expected": 1 + u * per_fgram / (n * main), "bound": 1 + per_fgram / main}


def batch_builder_ms(
    manifest_root: Path, vocab_path: Path, tags: Path, seq: int, micro: int, per_rank: int
) -> Dict:
    from ..fgrams.vocab import load_vocab
    from ..train.data import TrainBatches

    tb = TrainBatches(
        manifest_root,
        seq,
        per_rank,
        micro,
        1,
        0,
        seed=0,
        tags_dir=tags,
        vocab=load_vocab(vocab_path),
    )
    tb.micro_batches(0)  # matcher built, memmaps open
    t = time.perf_counter()
    steps = 20
    for s in range(1, steps + 1):
        tb.micro_batches(s)
    ms = (time.perf_counter() - t) * 1e3 / steps
    return {
        "ms_per_step": ms,
        "tokens": per_rank * seq,
        "us_per_token": ms * 1e3 / (per_rank * seq),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="benchmark_unique_fgrams.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/olmo-scone-unique-bench"),
        help="token files and vocabulary (kept)",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=positive_int,
        default=[1_000, 3_000, 10_000, 30_000, 100_000, 300_000],
        help="vocabulary sizes S to sample batches from",
    )
    p.add_argument(
        "--batches",
        nargs="+",
        type=positive_int,
        default=[1, 4, 16, 64, 256, 1024],
        help="batch sizes (sequences) to count unique f-grams in",
    )
    p.add_argument("--seq", type=positive_int, default=2048, help="sequence length")
    p.add_argument(
        "--repeats", type=positive_int, default=3, help="batches drawn per (S, batch size)"
    )
    a = p.parse_args(argv)
    from ..fgrams.vocab import load_vocab
    from .common import counted_real_vocab

    print(machine())
    manifest, vpath = counted_real_vocab(a.work, max(a.sizes))
    tok = manifest.tokenizer
    vocab = load_vocab(vpath, verify=False, tokenizer_sha256=tok["sha256"])
    sizes = [s for s in a.sizes if s <= len(vocab)]
    print(
        f"corpus: {manifest.num_tokens('train'):,} train tokens; vocabulary: {len(vocab):,} f-grams (count >= 5)"
    )
    points = measure_unique(manifest, vocab, sizes, a.batches, a.seq, a.repeats, seed=0)
    print(
        table(
            [
                [
                    f"{p['S']:,}",
                    p["B"],
                    f"{p['N']:,}",
                    f"{p['matched']:,.0f}",
                    f"{p['U']:,.0f}",
                    f"{p['U'] / p['N']:.4f}",
                ]
                for p in points
            ],
            ["S", "sequences", "tokens N", "matched positions", "unique f-grams U", "U / N"],
        )
    )
    rates = match_rates(manifest, vocab, sizes)
    worst = max(abs(occupancy(rates[p["S"]], p["N"]) / p["U"] - 1) for p in points)
    print(
        table(
            [
                [
                    f"{p['S']:,}",
                    p["B"],
                    f"{p['U']:,.0f}",
                    f"{occupancy(rates[p['S']], p['N']):,.0f}",
                ]
                for p in points
                if p["B"] in (1, 16, 256, 1024)
            ],
            ["S", "sequences", "U measured", "U occupancy model"],
        )
    )
    big = [p for p in points if p["B"] >= 64]
    worst_big = max(abs(occupancy(rates[p["S"]], p["N"]) / p["U"] - 1) for p in big)
    print(
        f"occupancy model vs the measured points: largest relative error {worst_big:.1%} over the {len(big)} with "
        f">= 64 sequences a batch, {worst:.1%} over all {len(points)} (within one document f-grams repeat, so small "
        "batches hold fewer distinct ones than independent draws would)"
    )
    frac = {s: float(r.sum()) for s, r in rates.items()}
    print(
        "matched fraction of positions by S: "
        + ", ".join(f"{s:,}: {f:.3f}" for s, f in frac.items())
    )
    z = zipf_fit(rates[max(sizes)], lo=1000)
    print(
        f"Zipf tail of the {max(sizes):,}-f-gram vocabulary's match rates (ranks >= 1,000): "
        f"p_r = {z['A']:.3g} * r^-{z['alpha']:.3f}"
    )
    n_paper = 2048 * 2048
    rows = []
    for s in (10_000_000, 100_000_000, 1_000_000_000):
        # matched fraction at paper scale: between the largest measured (a lower bound: more f-grams
        # match more positions) and every position
        lo, hi = (extrapolated_unique(z["alpha"], n_paper, s, m) for m in (frac[max(sizes)], 1.0))
        for cfg in ("configs/olmo/scone-1b-10m-a0.6b.yaml", "configs/olmo/scone-1b-10m-a1.8b.yaml"):
            r_lo, r_hi = flops_ratio(cfg, lo, n_paper), flops_ratio(cfg, hi, n_paper)
            rows.append(
                [
                    f"{s:,}",
                    Path(cfg).stem.split("-")[-1],
                    f"{lo:,.0f} - {hi:,.0f}",
                    f"{lo / n_paper:.2f} - {hi / n_paper:.2f}",
                    f"{r_lo['expected']:.2f}x - {r_hi['expected']:.2f}x",
                    f"{r_hi['bound']:.2f}x",
                ]
            )
    tags = a.work / f"tags-{len(vocab)}"
    if not (tags / "fgram_tags.json").is_file():
        from ..data.sources import open_token_files
        from ..fgrams.tagging import tag_token_files

        tag_token_files(open_token_files(str(manifest.root), "train"), vocab, vpath, tags)
    for seq, micro, per_rank in ((128, 16, 16), (a.seq, 4, 8)):
        r = batch_builder_ms(manifest.root, vpath, tags, seq, micro, per_rank)
        print(
            f"host-side batch building (S = {len(vocab):,}, {per_rank} x {seq} tokens a rank a step): "
            f"{r['ms_per_step']:.1f} ms a step, {r['us_per_token']:.2f} us a token"
        )
    print(
        f"\nextrapolated to the paper's batch (2048 x 2048 = {n_paper:,} tokens), OLMo-1B main model:"
    )
    print(
        table(
            rows,
            [
                "S",
                "A_fgram",
                f"U (model; matched fraction {frac[max(sizes)]:.2f} - 1)",
                "U / N",
                "training FLOPs vs baseline (expected)",
                "(bound: no sharing)",
            ],
        )
    )
    return 0
