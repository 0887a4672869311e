"""Helpers shared by the benchmarks: isolated runs with peak memory, and the real-text corpus."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..markdown import table  # noqa: F401  (re-exported for the benchmarks)
from ..paths import REPO, SHARED_DATA  # noqa: F401
from ..peak_memory import peak_rss_gb


def _child(fn, args, q):
    try:
        t0 = time.perf_counter()
        out = fn(*args)
        wall = time.perf_counter() - t0
        q.put(
            {"ok": True, "result": out, "seconds": wall, "peak_rss_gb": peak_rss_gb(children=True)}
        )
    except BaseException:
        q.put({"ok": False, "error": traceback.format_exc()})


def isolated(fn: Callable, *args) -> Dict[str, Any]:
    """Run ``fn(*args)`` in a fresh process: wall seconds, peak RSS (process or its workers), result."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    res = q.get()
    p.join()
    if not res["ok"]:
        raise RuntimeError(res["error"])
    return res


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def real_text_sources() -> List[str]:
    """Real English for benchmarks: ../shared/data/english-mix when present, else the embedded corpus."""
    mix = SHARED_DATA / "english-mix"
    from ..data.embedded import embedded_corpus_path

    files = sorted(str(p) for p in mix.glob("*.jsonl.gz")) if mix.is_dir() else []
    return files + [str(embedded_corpus_path())]


def prepared_real_text(cache: Path) -> "TokenManifest":  # noqa: F821
    """The real-text corpus tokenized once into ``cache`` (reused on later runs)."""
    from ..data.prepare import PrepareSettings, prepare

    return prepare(PrepareSettings(sources=real_text_sources(), out=cache, valid_fraction=0.01))


def build_vocab(
    paths,
    dtype,
    vocab,
    eos,
    pad,
    num,
    min_count,
    out: Path,
    memory_gb: float,
    meta: Optional[Dict] = None,
) -> Dict:
    """Count the top ``num`` f-grams of ``paths`` and save them to ``out`` (the benchmarks' vocabularies)."""
    import numpy as np

    from ..fgrams.counting import CountSettings, TokenSource, count_fgrams
    from ..fgrams.vocab import save_vocab

    srcs = [
        TokenSource(Path(p), np.dtype(dtype), np.memmap(p, dtype=dtype, mode="r").shape[0])
        for p in paths
    ]
    r = count_fgrams(srcs, vocab, eos, pad, CountSettings(5, num, min_count, 0, memory_gb))
    save_vocab(out, r.tokens, r.lengths, r.counts, {"min_count": min_count, **(meta or {})})
    return {"fgrams": len(r.counts), "stats": r.stats}


def counted_real_vocab(work: Path, num: int) -> tuple["TokenManifest", Path]:  # noqa: F821
    """(the real text prepared in ``work/tokens``, the top ``num`` f-grams counted from its train
    split with count >= 5 in ``work/fgrams-NUM.safetensors``); both kept for later runs."""
    manifest = prepared_real_text(work / "tokens")
    out = work / f"fgrams-{num}.safetensors"
    if not out.is_file():
        tok = manifest.tokenizer
        build_vocab(
            [str(x) for x in manifest.token_files("train")],
            manifest.dtype.name,
            tok["vocab_size"],
            tok["eos_token_id"],
            tok["pad_token_id"],
            num,
            5,
            out,
            8.0,
            {"tokenizer_sha256": tok["sha256"], "tokenizer_name": tok["name"]},
        )
    return manifest, out


#: the inference benchmarks' real-text vocabularies: (f-grams, lowest count kept); 10m counts the
#: corpus repeated to 100M tokens, as the f-gram benchmark does
REAL_TEXT_VOCABS = {"1m": (1_000_000, 2), "10m": (10_000_000, 5)}


def real_text_vocab(cache: Path, name: str, m, memory_gb: float = 8.0) -> Path:
    """``cache/vocab-NAME.safetensors`` (:data:`REAL_TEXT_VOCABS`) counted on the train split of
    ``m`` (:func:`prepared_real_text`), built once and shared by bench/inference.py and
    bench/vllm.py."""
    if name not in REAL_TEXT_VOCABS:
        from ..errors import fail

        fail(f"--tables: unknown table {name!r} (1m or 10m)")
    path = cache / f"vocab-{name}.safetensors"
    if path.exists():
        return path
    print(f"building the {name} vocabulary ...", flush=True)
    paths = [str(f) for f in m.token_files("train")]
    dtype = m.dtype.name
    src = paths if name == "1m" else repeat_corpus(paths, dtype, 100_000_000, cache / "repeated")
    num, min_count = REAL_TEXT_VOCABS[name]
    V = int(m.tokenizer["vocab_size"])
    isolated(
        build_vocab, src, dtype, V, m.eos_token_id, m.pad_token_id, num, min_count, path, memory_gb
    )
    return path


def repeat_corpus(paths: List[str], dtype: str, target: int, out: Path) -> List[str]:
    """The corpus repeated (file copies) until it holds ``target`` tokens: scale without more text."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    base = sum(np.memmap(p, dtype=dtype, mode="r").shape[0] for p in paths)
    reps = -(-target // base)
    files = []
    for r in range(reps):
        for i, p in enumerate(paths):
            dst = out / f"rep{r:02d}-{i}.npy"
            if not dst.exists():
                np.fromfile(p, dtype=dtype).tofile(dst)
            files.append(str(dst))
    return files
