"""Offloaded-inference benchmark: the same main model served with and without a SCONE table.

All figures come from one run, so every ratio compares measurements taken side by side:

* **decode**: per-token latency of KV-cache decode steps (batch 1 and 16) for the baseline, SCONE
  with the table in RAM, and SCONE with the table memory-mapped (warm page cache), for each table
  size; the variants are interleaved round by round and the median of the rounds is reported;
* **prefill**: tokens/s of a full forward over real text, same variants;
* **lookup**: what a decode step adds on the host for 1, 16 and 64 sequences: match the last K
  tokens, deduplicate, gather the rows (RAM, mmap warm, mmap cold = the shards' pages dropped from
  the page cache before every lookup);
* **gather bandwidth**: rows/s and GB/s of large batched gathers next to a plain memcpy of the same
  machine in the same run;
* **resident memory** of a process serving lookups from a memory-mapped table much larger than RAM.

What is real and what is synthetic: the token streams and the f-gram vocabularies are real (real
text; the 1M and 10M vocabularies of ``benchmark_fgrams.py``), so matching and row locality are
those of real text. The table *values* and the main model's weights are random (speed does not
depend on them), and decode feeds the real next tokens of the text (teacher forcing) so that
f-grams match at the rate they do on real text rather than on a random model's output. The
largest table (sized to the free disk) is table-only: no vocabulary that large exists here, so its
lookups gather uniformly random rows, the worst case for locality.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .common import REPO, isolated, machine, prepared_real_text, real_text_vocab, table


# ---- setup -------------------------------------------------------------------------------------
def _config(work: Path, d_model: int, n_heads: int, n_layers: int, seq: int) -> Path:
    from ..config import SconeModelConfig, SconeTrainConfig
    from ..recipes.model_configs import main_model_settings

    cfg = SconeTrainConfig.new()
    cfg.tokenizer.identifier = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
    cfg.model = SconeModelConfig.new(
        **main_model_settings(
            d_model, n_heads, n_layers, seq, {"vocab_path": None, "n_layers": 1}, "cpu"
        )
    )
    path = work / "config.yaml"
    work.mkdir(parents=True, exist_ok=True)
    cfg.save(path)
    return path


def _main_model(cfg_path: Path):
    from ..config import SconeTrainConfig, load_config
    from ..model import SconeOLMo

    cfg = load_config(SconeTrainConfig, cfg_path)
    torch.manual_seed(0)
    return cfg, SconeOLMo(cfg.model).eval()


def _synthetic_rows(d_model: int, block: int = 1 << 16):
    """Rows ``[lo, hi)`` of a synthetic bf16 table: a fixed random block of 65,536 rows, indexed by
    a row permutation (values do not affect speed; drawing 30M x d normals would take longer
    than writing them to disk)."""
    base = (torch.randn((block, d_model), generator=torch.Generator().manual_seed(0)) * 0.02).to(
        torch.bfloat16
    )

    def rows(lo: int, hi: int, advance) -> torch.Tensor:
        idx = (torch.arange(lo, hi, dtype=torch.int64) * 40503) % block
        advance(hi - lo)
        return base[idx]

    return rows


def _artifact(
    out: Path,
    cfg_path: Path,
    vocab_path: Optional[Path],
    d_model: int,
    num_rows: Optional[int] = None,
) -> Path:
    """A bf16 serving artifact with synthetic rows (reused when a finished one is there)."""
    from ..export import main_model_state, write_artifact
    from ..fgrams.vocab import load_vocab

    if (out / "manifest.json").is_file():
        return out
    vocab = load_vocab(vocab_path) if vocab_path is not None else None
    state = None
    if vocab is not None:
        cfg, model = _main_model(cfg_path)
        state = main_model_state(model, cfg)
    write_artifact(
        out,
        cfg_path if vocab is not None else None,
        state,
        vocab,
        d_model,
        50280,
        _synthetic_rows(d_model),
        "bf16",
        2.0,
        "synthetic rows (benchmark)",
        num_rows,
    )
    return out


def _drop_page_cache(table) -> None:
    """Evict the table's shards from the page cache (cold reads) without root: unmap, then
    fadvise DONTNEED (pages still mapped by this process would not be evicted)."""
    table.remap()
    gc.collect()
    for s in table.manifest["shards"]:
        fd = os.open(table.root / s["file"], os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _warm_page_cache(table) -> None:
    for s in table.manifest["shards"]:
        with open(table.root / s["file"], "rb") as f:
            while f.read(1 << 26):
                pass


# ---- measurements --------------------------------------------------------------------------------
def memcpy_gbps(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8).random_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e9


def gather_rate(tbl, rows: np.ndarray, repeats: int = 3) -> Dict[str, float]:
    """Best-of rows/s and GB/s (bytes of the rows as stored) of one batched gather."""
    buf = torch.empty((len(rows), tbl.d_model), dtype=tbl.transfer_dtype)
    tbl.gather(rows, out=buf)  # warm-up (and page-in for a warm mmap)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        tbl.gather(rows, out=buf)
        best = min(best, time.perf_counter() - t)
    nbytes = len(rows) * tbl.d_model * buf.element_size()
    return {"rows_per_s": len(rows) / best, "gbps": nbytes / best / 1e9}


def _contexts(stream: np.ndarray, batch: int, k: int, i: int) -> torch.Tensor:
    n = len(stream) - k
    starts = [(i * 7919 + b * 104729) % n for b in range(batch)]
    return torch.from_numpy(np.stack([stream[s : s + k] for s in starts]).astype(np.int64))


def lookup_latency(
    served, stream: np.ndarray, batch: int, iters: int, cold: bool = False
) -> Dict[str, float]:
    """Median ms of what a decode step adds on the host: match, dedupe, gather, copy to the device."""
    k = served.matcher.max_n
    times, matched = [], 0
    for i in range(iters):
        ctx = _contexts(stream, batch, k, i)
        if cold:
            _drop_page_cache(served.table)
        t = time.perf_counter()
        p = served.prepare(ctx[:, -1:], context=ctx)
        times.append(time.perf_counter() - t)
        matched += 0 if p.matched is None else int(p.matched.sum())
    return {
        "ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "matched": matched / (iters * batch),
    }


def table_only_latency(tbl, batch: int, iters: int, cold: bool, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    buf = torch.empty((batch, tbl.d_model), dtype=tbl.transfer_dtype)
    times = []
    for _ in range(iters):
        rows = np.unique(rng.integers(0, tbl.rows, batch))
        if cold:
            _drop_page_cache(tbl)
        t = time.perf_counter()
        tbl.gather(rows, out=buf[: len(rows)])
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _decode_once(served, prompts: torch.Tensor, future: torch.Tensor, steps: int) -> float:
    """Seconds per decode step: prefill the prompts, then ``steps`` KV-cache steps fed the real
    next tokens (teacher forcing), so f-grams match at real-text rates."""
    seqs = prompts
    _, past = served.step(seqs, None)
    t = time.perf_counter()
    for j in range(steps):
        seqs = torch.cat([seqs, future[:, j : j + 1]], dim=1)
        _, past = served.step(seqs, past)
    return (time.perf_counter() - t) / steps


def interleaved(variants: Dict[str, callable], rounds: int, seed: int = 0) -> Dict[str, float]:
    """Median over rounds; within a round every variant runs once, in a shuffled order. Also
    ``ratio``: the median over rounds of (second variant / first) within the same round, which
    cancels the slow drifts of a shared machine better than a ratio of medians."""
    rng = random.Random(seed)
    got: Dict[str, List[float]] = {k: [] for k in variants}
    names = list(variants)
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            got[name].append(variants[name]())
    out = {k: statistics.median(v) for k, v in got.items()}
    first, second = list(variants)[:2]
    out["ratio"] = statistics.median(b / a for a, b in zip(got[first], got[second]))
    return out


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def mmap_resident_memory(artifact: str, lookups: int, batch: int) -> Dict[str, float]:
    """In a fresh process: RSS before and after ``lookups`` random gathers from a memory-mapped table."""
    from ..serving.table import FgramTable

    before = rss_gb()
    tbl = FgramTable(artifact, "mmap", verify=False)
    _drop_page_cache(tbl)
    opened = rss_gb()
    rng = np.random.default_rng(1)
    buf = torch.empty((batch, tbl.d_model), dtype=tbl.transfer_dtype)
    for _ in range(lookups):
        rows = np.unique(rng.integers(0, tbl.rows, batch))
        tbl.gather(rows, out=buf[: len(rows)])
    return {
        "before_gb": before,
        "opened_gb": opened,
        "after_gb": rss_gb(),
        "rows": tbl.rows,
        "touched_gb": lookups * batch * tbl.d_model * 2 / 1e9,
    }


# ---- the run ---------------------------------------------------------------------------------------
def _fmt_rows(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K"


def _open(art: Path, mode: str, tag: str, size_gb: float):
    """The served model over ``art``'s table (``mode``), and the same main model without a table:
    each phase measures the baseline again, interleaved with it, on the very same module."""
    from ..serving.runtime import ServedModel

    gc.collect()
    t0 = time.perf_counter()
    served = ServedModel(art, mode=mode, verify=(mode == "ram"))
    print(
        f"{tag} opened the table ({size_gb:.1f} GB bf16) mode={mode} in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    if mode == "mmap":
        _warm_page_cache(served.table)
    return served, ServedModel.wrap(served.model, served.cfg)


def _decode_phase(
    served, base, valid, a, rng, label: str, mode: str, key: str, results: Dict
) -> List[List]:
    """Decode ms per step, SCONE against the baseline, at batch 1 and 16 (teacher-forced real text)."""
    rows = []
    for batch in (1, 16):
        starts = rng.integers(0, len(valid) - a.prompt_len - a.decode_steps, batch)
        win = torch.from_numpy(
            np.stack([valid[s : s + a.prompt_len + a.decode_steps] for s in starts])
        )
        prompts, future = win[:, : a.prompt_len], win[:, a.prompt_len :]
        med = interleaved(
            {
                "baseline": lambda: _decode_once(base, prompts, future, a.decode_steps),
                f"scone-{mode}": lambda: _decode_once(served, prompts, future, a.decode_steps),
            },
            a.rounds,
        )
        sc = med[f"scone-{mode}"]
        lk = lookup_latency(served, valid, batch, 100)["ms"] / 1e3
        rows.append(
            [
                label,
                mode,
                batch,
                f"{med['baseline'] * 1e3:.2f}",
                f"{sc * 1e3:.2f}",
                f"{(med['ratio'] - 1) * 100:+.1f}%",
                f"{lk / med['baseline'] * 100:.2f}%",
            ]
        )
        results[f"decode_{key}_b{batch}"] = med
        print(
            f"[{key}] decode batch {batch}: baseline {med['baseline'] * 1e3:.2f} ms, scone {sc * 1e3:.2f} ms",
            flush=True,
        )
    return rows


def _prefill_phase(served, base, valid, a, label: str, mode: str, key: str, results: Dict) -> List:
    """Prefill tokens/s of 4 x 512 real tokens, SCONE against the baseline."""
    chunks = torch.from_numpy(valid[: 4 * 512].reshape(4, 512))
    med = interleaved(
        {
            "baseline": lambda: _timed(lambda: base.logits(chunks)),
            f"scone-{mode}": lambda: _timed(lambda: served.logits(chunks)),
        },
        a.prefill_rounds,
    )
    results[f"prefill_{key}"] = med
    return [
        label,
        mode,
        f"{chunks.numel() / med['baseline']:,.0f}",
        f"{chunks.numel() / med[f'scone-{mode}']:,.0f}",
        f"{1 / med['ratio']:.3f}",
    ]


def _lookup_phase(served, valid, a, label: str, mode: str, t: str, results: Dict) -> List[List]:
    """Host lookup per decode step (match + dedupe + gather + copy), warm and, memory-mapped, cold."""
    rows = []
    for lmode in [mode] + (["mmap-cold"] if mode == "mmap" else []):
        for batch in (1, 16, 64):
            cold = lmode == "mmap-cold"
            r = lookup_latency(
                served, valid, batch, a.lookup_iters // 4 if cold else a.lookup_iters, cold=cold
            )
            rows.append(
                [label, lmode, batch, f"{r['ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['matched']:.0%}"]
            )
            results[f"lookup_{t}_{lmode}_b{batch}"] = r
    if mode == "mmap":  # the cold lookups dropped the table from the page cache
        _warm_page_cache(served.table)
    return rows


def _gather_phase(
    served, valid, rng, bw: float, label: str, mode: str, key: str, results: Dict
) -> List[List]:
    """Batched gathers of a real batch's unique rows and of random rows, against memcpy."""
    rows = []
    real = np.unique(served.matcher.match_batch(valid[: 16 * 1024].reshape(16, 1024)))
    random_rows = np.unique(rng.integers(0, served.table.rows, 65536))
    for what, rws in (("real-text batch", real[real >= 0]), ("random rows", random_rows)):
        g = gather_rate(served.table, rws)
        rows.append(
            [
                label,
                mode,
                what,
                f"{len(rws):,}",
                f"{g['rows_per_s'] / 1e6:.2f}",
                f"{g['gbps']:.2f}",
                f"{g['gbps'] / bw:.0%}",
            ]
        )
        results[f"gather_{key}_{what}"] = g
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="benchmark_inference.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cache",
        type=Path,
        default=REPO / "runs" / "bench",
        help="corpora and vocabularies (shared with benchmark_fgrams.py)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "bench-inference",
        help="artifacts (tens of GB)",
    )
    p.add_argument("--d-model", type=int, default=768, help="d_model of the timed main model")
    p.add_argument(
        "--n-heads", type=int, default=12, help="attention heads of the timed main model"
    )
    p.add_argument(
        "--n-layers", type=int, default=12, help="default: the paper's GPT-2-size 128M main model"
    )
    p.add_argument(
        "--tables",
        default="1m,10m",
        help="vocabularies to serve: 1m (real text, min count 2), 10m (repeated text)",
    )
    p.add_argument(
        "--ram-tables", default="1m,10m", help="which of --tables are also served from RAM"
    )
    p.add_argument(
        "--largest-gb",
        type=float,
        default=None,
        help="table-only mmap table size; default: free disk - 12 GB; 0: skip",
    )
    p.add_argument(
        "--rounds", type=int, default=7, help="timed rounds per variant (the median is reported)"
    )
    p.add_argument("--prefill-rounds", type=int, default=5, help="timed prefill rounds per variant")
    p.add_argument("--decode-steps", type=int, default=24, help="decode steps per round")
    p.add_argument("--prompt-len", type=int, default=96, help="prompt length (tokens)")
    p.add_argument(
        "--lookup-iters", type=int, default=200, help="host lookups timed per batch size"
    )
    p.add_argument("--memory-gb", type=float, default=8.0, help="for building the 10M vocabulary")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    a = p.parse_args(argv)
    from ..serving.table import FgramTable, table_disk_bytes

    torch.set_grad_enabled(False)
    m = prepared_real_text(a.cache / "real-text")
    valid = np.concatenate([np.asarray(x, dtype=np.int64) for x in m.memmaps("valid")])
    wanted = [t for t in a.tables.split(",") if t]
    vocab_paths = {t: real_text_vocab(a.cache, t, m, a.memory_gb) for t in wanted}
    cfg_path = _config(
        a.work, a.d_model, a.n_heads, a.n_layers, max(1024, a.prompt_len + a.decode_steps + 8)
    )
    results: Dict[str, object] = {"machine": machine(), "torch_threads": torch.get_num_threads()}
    print(
        f"# Offloaded-inference benchmark  ({machine()}, torch threads {torch.get_num_threads()})"
    )

    bw = memcpy_gbps()
    results["memcpy_gbps"] = bw
    print(f"memcpy (torch copy_, 256 MiB, best of 5): {bw:.2f} GB/s\n")

    decode_rows, prefill_rows, lookup_rows, gather_rows = [], [], [], []
    rng = np.random.default_rng(0)
    for t in wanted:
        art = _artifact(a.work / f"artifact-{t}", cfg_path, vocab_paths[t], a.d_model)
        size_gb = table_disk_bytes(art) / 1e9
        # One table mode at a time (a 10M table in RAM and its warm page cache would not both fit);
        # each phase measures the baseline again, interleaved with it, on the very same module.
        for mode in ["mmap"] + (["ram"] if t in a.ram_tables.split(",") else []):
            served, base = _open(art, mode, f"[{t}]", size_gb)
            label = _fmt_rows(served.table.rows)
            key = f"{t}_{mode}"
            decode_rows += _decode_phase(served, base, valid, a, rng, label, mode, key, results)
            prefill_rows.append(_prefill_phase(served, base, valid, a, label, mode, key, results))
            lookup_rows += _lookup_phase(served, valid, a, label, mode, t, results)
            gather_rows += _gather_phase(served, valid, rng, bw, label, mode, key, results)
            del served, base

    largest = None
    if a.largest_gb != 0:
        free = shutil.disk_usage(a.work).free / 1e9
        want_gb = a.largest_gb if a.largest_gb else max(0.0, free - 12.0)
        row_bytes = a.d_model * 2
        n = int(want_gb * 1e9 // row_bytes)
        if n > 0:
            print(
                f"writing the table-only {want_gb:.1f} GB table ({n:,} rows; free disk {free:.1f} GB) ...",
                flush=True,
            )
            out = _artifact(
                a.work / f"artifact-largest-{_fmt_rows(n)}", cfg_path, None, a.d_model, num_rows=n
            )
            tbl = FgramTable(out, "mmap", verify=False)
            size_gb = table_disk_bytes(out, tbl.manifest) / 1e9
            label = _fmt_rows(tbl.rows) + " (table only)"
            for batch in (1, 16, 64):
                cold = table_only_latency(tbl, batch, a.lookup_iters // 4, cold=True)
                tbl.willneed_rows = 0
                faults = table_only_latency(tbl, batch, a.lookup_iters // 4, cold=True, seed=1)
                tbl.willneed_rows = 1024
                warm = table_only_latency(
                    tbl, batch, a.lookup_iters, cold=False, seed=2
                )  # rows not seen before
                lookup_rows.append(
                    [
                        label,
                        "mmap-cold, WILLNEED",
                        batch,
                        f"{cold:.3f}",
                        "",
                        "random rows, gather only",
                    ]
                )
                lookup_rows.append(
                    [
                        label,
                        "mmap-cold, page faults",
                        batch,
                        f"{faults:.3f}",
                        "",
                        "random rows, gather only",
                    ]
                )
                lookup_rows.append(
                    [
                        label,
                        "mmap, not evicted",
                        batch,
                        f"{warm:.3f}",
                        "",
                        "random rows, gather only",
                    ]
                )
                results[f"largest_lookup_b{batch}"] = {
                    "cold_willneed_ms": cold,
                    "cold_faults_ms": faults,
                    "uncached_ms": warm,
                }
            rss = isolated(mmap_resident_memory, str(out), 2000, 64)["result"]
            largest = {"rows": tbl.rows, "size_gb": size_gb, **rss}
            results["largest"] = largest
            del tbl

    print("\n## Decode (KV cache, teacher-forced real text; median of rounds; ms per step)")
    print(
        table(
            decode_rows,
            [
                "table",
                "mode",
                "batch",
                "baseline ms",
                "SCONE ms",
                "overhead (paired)",
                "host lookup / baseline step",
            ],
        )
    )
    print("\n## Prefill (4 x 512 real tokens)")
    print(
        table(
            prefill_rows,
            ["table", "mode", "baseline tokens/s", "SCONE tokens/s", "SCONE/baseline speed"],
        )
    )
    print("\n## Host lookup per decode step (match last K tokens + dedupe + gather + to device)")
    print(
        table(
            lookup_rows, ["table", "mode", "sequences", "median ms", "p90 ms", "positions matched"]
        )
    )
    print(f"\n## Batched gathers (bf16 rows, d={a.d_model}); memcpy in this run: {bw:.2f} GB/s")
    print(table(gather_rows, ["table", "mode", "rows", "count", "M rows/s", "GB/s", "of memcpy"]))
    if largest:
        print(
            f"\n## Resident memory, memory-mapped table of {largest['rows']:,} rows = {largest['size_gb']:.1f} GB on disk"
        )
        print(
            f"RSS: {largest['before_gb']:.2f} GB before opening, {largest['opened_gb']:.2f} GB opened, "
            f"{largest['after_gb']:.2f} GB after 2000 lookups of 64 random rows ({largest['touched_gb']:.2f} GB of rows read)"
        )
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
