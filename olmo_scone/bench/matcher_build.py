"""``scripts/benchmark_matcher_build.py``: host RAM to build the matcher's index, and at 1B f-grams.

Export and tagging build the host matcher (``FgramMatcher(vocab)``) in one process: serving
memory-maps the saved index, but building it needs the vocabulary, the index itself and the
builder's temporaries (int64 copies of the tokens, one sort per n-gram length, the hash table's
probe arrays) in RAM at once. The index's size is exact arithmetic (``accounting.index_bytes``:
76.7 GB at 1B f-grams); the temporaries are measured here, in a fresh process per point: peak RSS
minus RSS before the build, less the index. Points: real vocabularies counted from the real text
(where every prefix of an f-gram is itself an f-gram, so the trie has one node per f-gram), and
larger synthetic ones with random tokens and the real length mix (every prefix its own node: the
worst case for the trie). Temporaries are modelled as ``a`` bytes per f-gram plus ``b`` per trie
node, fitted by least squares over all points (each point's residual is printed), then
extrapolated to the paper's sizes.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ArgumentParser, positive_int
from ..peak_memory import peak_rss_gb, rss_gb
from .common import counted_real_vocab, isolated, machine, table

PAPER_SIZES = (10_000_000, 100_000_000, 1_000_000_000)


def synthetic_vocab(num: int, length_mix: Sequence[float], vocab_size: int, seed: int = 0):
    """``num`` f-grams of random tokens whose lengths 2..K follow ``length_mix`` (fractions)."""
    from ..fgrams.vocab import FgramVocab

    k = len(length_mix) + 1
    rng = np.random.default_rng(seed)
    lengths = rng.choice(np.arange(2, k + 1, dtype=np.int8), size=num, p=list(length_mix))
    tokens = rng.integers(0, vocab_size, size=(num, k), dtype=np.int32)
    tokens[np.arange(k)[None, :] >= lengths[:, None]] = -1
    return FgramVocab(tokens, lengths, np.ones(num, np.int64), {})


def prefix_closed_vocab(num: int, length_mix: Sequence[float], vocab_size: int, seed: int = 0):
    """``num`` random f-grams in which every prefix of length >= 2 is itself one of them, as in a
    counted vocabulary (a prefix is at least as frequent), so the trie has one node per f-gram."""
    from ..fgrams.vocab import FgramVocab

    k = len(length_mix) + 1
    rng = np.random.default_rng(seed)
    per_length = np.floor(np.asarray(length_mix) * num).astype(np.int64)
    per_length[0] += num - per_length.sum()
    tokens = np.full((num, k), -1, dtype=np.int32)
    lengths = np.zeros(num, dtype=np.int8)
    lo = prev_lo = prev_m = 0
    for n, m in zip(range(2, k + 1), per_length):
        if n == 2:
            tokens[lo : lo + m, :2] = rng.integers(0, vocab_size, size=(m, 2), dtype=np.int32)
        else:  # extend random f-grams of length n - 1 by one token
            parents = prev_lo + rng.integers(0, prev_m, size=m)
            tokens[lo : lo + m, : n - 1] = tokens[parents, : n - 1]
            tokens[lo : lo + m, n - 1] = rng.integers(0, vocab_size, size=m, dtype=np.int32)
        lengths[lo : lo + m] = n
        prev_lo, prev_m, lo = lo, m, lo + m
    return FgramVocab(tokens, lengths, np.ones(num, np.int64), {})


def length_mix(vocab) -> List[float]:
    """Fractions of f-grams of each length 2..K."""
    counts = np.bincount(vocab.lengths, minlength=vocab.max_n + 1)[2:]
    return (counts / counts.sum()).tolist()


def measure_build(source: Dict, vocab_size: int) -> Dict:
    """Peak build memory of ``FgramMatcher`` over one vocabulary (run in a fresh process)."""
    from ..accounting import index_bytes
    from ..fgrams.matching import FgramMatcher
    from ..fgrams.vocab import load_vocab

    if "path" in source:
        vocab = load_vocab(source["path"], verify=False)
        if source.get("num"):
            from ..fgrams.vocab import FgramVocab

            n = source["num"]
            vocab = FgramVocab(vocab.tokens[:n], vocab.lengths[:n], vocab.counts[:n], {})
    elif source.get("prefix_closed"):
        vocab = prefix_closed_vocab(source["num"], source["mix"], vocab_size)
    else:
        vocab = synthetic_vocab(source["num"], source["mix"], vocab_size)
    gc.collect()
    before = rss_gb() * 2**30
    matcher = FgramMatcher(vocab, vocab_size)
    extra = peak_rss_gb() * 2**30 - before
    index = index_bytes(matcher.num_nodes)
    return {
        "S": len(vocab),
        "nodes": matcher.num_nodes,
        "before_gb": before / 2**30,
        "extra_gb": extra / 2**30,
        "index_gb": index / 2**30,
        "temp_bytes": extra - index,
    }


def fit_temporaries(points: List[Dict]) -> tuple[float, float]:
    """(bytes per f-gram, bytes per trie node) of the builder's temporaries, least squares."""
    x = np.array([[q["S"], q["nodes"]] for q in points], dtype=np.float64)
    y = np.array([q["temp_bytes"] for q in points], dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(a), float(b)


def predicted_extra_bytes(num_fgrams: int, num_nodes: int, per_fgram: float, per_node: float):
    """Build memory beyond the loaded vocabulary: the index (exact) plus the fitted temporaries."""
    from ..accounting import index_bytes

    return index_bytes(int(num_nodes)) + per_fgram * num_fgrams + per_node * num_nodes


def vocab_bytes(num_fgrams: int, k: int = 5) -> int:
    """A loaded vocabulary: int32 tokens [S, K], int8 lengths, int64 counts."""
    return num_fgrams * (4 * k + 1 + 8)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="benchmark_matcher_build.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/olmo-scone-matcher-bench"),
        help="scratch folder for the built indexes",
    )
    p.add_argument(
        "--real",
        nargs="+",
        type=positive_int,
        default=[100_000, 300_000, 1_000_000],
        help="top-S prefixes of one vocabulary counted from the real text (count >= 5; sizes "
        "beyond what the text holds become the whole vocabulary)",
    )
    p.add_argument(
        "--synthetic",
        nargs="+",
        type=positive_int,
        default=[4_000_000, 16_000_000],
        help="sizes (f-grams) of the synthetic vocabularies to build",
    )
    a = p.parse_args(argv)
    from ..fgrams.vocab import load_vocab

    print(machine())
    manifest, path = counted_real_vocab(a.work, max(a.real))
    vocab = load_vocab(path, verify=False)
    vocab_size = int(manifest.tokenizer["vocab_size"])
    mix = length_mix(vocab)
    print(
        f"real vocabulary: {len(vocab):,} f-grams (count >= 5); lengths 2..5: "
        + ", ".join(f"{x:.1%}" for x in mix)
    )
    real = sorted({min(s, len(vocab)) for s in a.real})
    sources = [{"path": str(path), "num": s, "kind": "real"} for s in real]
    sources += [{"num": s, "mix": mix, "kind": "synthetic"} for s in a.synthetic]
    points = []
    for src in sources:
        r = isolated(measure_build, src, vocab_size)
        points.append({**r["result"], "kind": src["kind"], "seconds": r["seconds"]})
    per_fgram, per_node = fit_temporaries(points)
    print(
        f"temporaries fitted over {len(points)} points: {per_fgram:.0f} B per f-gram + "
        f"{per_node:.0f} B per trie node"
    )
    rows = []
    for q in points:
        pred = predicted_extra_bytes(q["S"], q["nodes"], per_fgram, per_node) / 2**30
        rows.append(
            [
                q["kind"],
                f"{q['S']:,}",
                f"{q['nodes'] / q['S']:.2f}",
                f"{q['before_gb']:.3f}",
                f"{q['extra_gb']:.3f}",
                f"{q['index_gb']:.3f}",
                f"{q['seconds']:.1f}",
                f"{pred:.3f} ({pred / q['extra_gb'] - 1:+.0%})",
            ]
        )
    print(
        table(
            rows,
            [
                "vocabulary",
                "f-grams S",
                "trie nodes / f-gram",
                "RSS before GiB",
                "build peak extra GiB",
                "index GiB (exact)",
                "process s (load + build)",
                "model GiB (residual)",
            ],
        )
    )
    worst = max(q["nodes"] / q["S"] for q in points)
    rows = []
    for s in PAPER_SIZES:
        for label, npf in (("real-like", 1.0), (f"worst case ({worst:.2f} nodes / f-gram)", worst)):
            extra = predicted_extra_bytes(s, int(s * npf), per_fgram, per_node)
            rows.append(
                [
                    f"{s:,}",
                    label,
                    f"{vocab_bytes(s) / 1e9:.1f}",
                    f"{extra / 1e9:.1f}",
                    f"{(vocab_bytes(s) + extra) / 1e9:.1f}",
                ]
            )
    print(
        table(rows, ["f-grams", "trie", "vocabulary GB", "build extra GB", "host RAM to build GB"])
    )
    return 0
