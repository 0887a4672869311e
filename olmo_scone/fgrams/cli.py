"""``scripts/build_fgrams.py`` and ``scripts/tag_fgrams.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.sources import open_token_files
from ..errors import ArgumentParser, fail, full_disk, non_negative_int, positive_float, positive_int
from ..locking import OutputLock
from ..outputs import refuse_foreign, refuse_overlap
from .counting import CountSettings, TokenSource, count_fgrams
from .tagging import TAGS_MANIFEST, tag_token_files
from .vocab import is_vocab_file, load_vocab, save_vocab


def build_main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(
        prog="build_fgrams.py", description="Count the S most frequent n-grams (f-grams)."
    )
    p.add_argument(
        "--tokens",
        required=True,
        help="a directory made by prepare_data.py, or a glob of token files",
    )
    p.add_argument(
        "--split", default="train", help="which split of a token directory (default: %(default)s)"
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer name (needed only for bare token files)"
    )
    p.add_argument(
        "--max-n", type=positive_int, default=5, help="K, the longest f-gram (default: %(default)s)"
    )
    p.add_argument(
        "--num-fgrams", type=positive_int, required=True, help="S, how many f-grams to keep"
    )
    p.add_argument(
        "--min-count",
        type=positive_int,
        default=5,
        help="drop n-grams seen fewer times (default: %(default)s)",
    )
    p.add_argument(
        "--processes",
        type=non_negative_int,
        default=0,
        help="worker processes (0: all cores); with --ray, the CPUs of the local Ray runtime "
        "(a cluster's nodes run as many tasks as the CPUs `ray start --num-cpus` gave them)",
    )
    p.add_argument(
        "--memory-gb",
        type=positive_float,
        default=8.0,
        help="memory budget of this machine for counting and merging (with --ray: of each node) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--chunk-tokens",
        type=positive_int,
        default=1 << 20,
        help="tokens per counting task, at most (smaller when --memory-gb asks) (default: %(default)s)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="local runs: where partial counts go (default: a temporary folder beside --out, removed at the end)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the passes as Ray tasks: on a local Ray runtime (no ADDRESS), on the cluster this "
        "machine belongs to (auto) or at host:port; every node must read --tokens at the same path",
    )
    p.add_argument("--out", required=True, type=Path, help="vocabulary file (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing vocabulary file")
    a = p.parse_args(argv)
    settings = CountSettings(
        max_n=a.max_n,
        num_fgrams=a.num_fgrams,
        min_count=a.min_count,
        processes=a.processes,
        memory_gb=a.memory_gb,
        chunk_tokens=a.chunk_tokens,
        work_dir=a.work_dir,
    )
    settings.validate()
    if a.ray is not None and a.work_dir is not None:
        fail("--work-dir is for local runs: under --ray, partial counts live in Ray's object store")
    refuse_overlap(a.out, {"the token files": a.tokens, "--work-dir": a.work_dir})
    if a.out.is_dir():
        fail(f"--out {a.out} is a directory; give a .safetensors file name")
    if a.out.exists() and not a.overwrite:
        fail(f"{a.out} exists; pass --overwrite to replace it")
    refuse_foreign(a.out, "an f-gram vocabulary", is_vocab_file, "build_fgrams.py")
    files = open_token_files(a.tokens, a.split, a.tokenizer)
    tok = files.tokenizer
    sources = [TokenSource(f.path, f.dtype, f.length) for f in files.files if f.length]
    with OutputLock(a.out, "--out"):  # one writer per output; removes a killed run's temporaries
        if a.ray is not None:
            res = _count_on_ray(a.ray, sources, tok, settings)
        else:
            res = _count_beside(a.out, sources, tok, settings)
        return _write_vocab(a, res, files, tok)


def _count_on_ray(address: str, sources, tok, settings: CountSettings):
    from .counting.ray_executor import RayExecutor

    # a local runtime's object store: half the budget (Ray spills to disk beyond it), at least its 75 MB minimum
    ex = RayExecutor(address, settings.processes, object_store_gb=max(0.1, settings.memory_gb / 2))
    try:
        return count_fgrams(
            sources,
            int(tok["vocab_size"]),
            int(tok["eos_token_id"]),
            int(tok["pad_token_id"]),
            settings,
            executor=ex,
        )
    finally:
        ex.close()


def _count_beside(out: Path, sources, tok, settings: CountSettings):
    """Count with the partial counts in a temporary folder beside ``out`` (unless --work-dir): on the
    output's disk, named so that the next run removes it if this one is killed (locking.py)."""
    import shutil
    import tempfile

    from ..atomic import temporary_prefix

    own = settings.work_dir is None
    if own:
        out.parent.mkdir(parents=True, exist_ok=True)
        settings.work_dir = Path(
            tempfile.mkdtemp(prefix=temporary_prefix(out.name), dir=out.parent)
        )
    try:
        return count_fgrams(
            sources,
            int(tok["vocab_size"]),
            int(tok["eos_token_id"]),
            int(tok["pad_token_id"]),
            settings,
        )
    except (
        OSError
    ) as e:  # raised in a worker (numpy's tofile says "N requested and M written", no errno)
        if not full_disk(e, settings.work_dir):
            raise
        fail(
            f"no space left on device for the partial counts in {settings.work_dir}: free space, or give --work-dir "
            "on a larger disk (nothing half-written was kept)"
        )
    finally:
        if own:
            shutil.rmtree(settings.work_dir, ignore_errors=True)


def _write_vocab(a, res, files, tok) -> int:
    if len(res.counts) == 0:
        fail(
            f"no n-gram occurs {a.min_count} times or more in {files.num_tokens} tokens; lower --min-count"
        )
    meta = {
        "min_count": a.min_count,
        "num_fgrams": a.num_fgrams,
        "tokenizer_name": tok["name"],
        "tokenizer_sha256": tok["sha256"],
        "vocab_size": tok["vocab_size"],
        "eos_token_id": tok["eos_token_id"],
        "pad_token_id": tok["pad_token_id"],
        "corpus_tokens": res.stats["corpus_tokens"],
        "corpus_fingerprint": files.fingerprint or "",
    }
    digest = save_vocab(a.out, res.tokens, res.lengths, res.counts, meta)
    st = res.stats
    print(
        f"wrote {a.out}: {len(res.counts):,} f-grams (asked {a.num_fgrams:,}; {st['frequent_ngrams']:,} n-grams "
        f"seen >= {a.min_count} times), sha256 {digest[:12]}"
    )
    print(
        f"corpus {st['corpus_tokens']:,} tokens, {st['wall_time_s']:.1f} s "
        f"({st['corpus_tokens'] / max(st['wall_time_s'], 1e-9) / 1e6:.2f}M tokens/s), peak RSS {st['peak_rss_gb']:.2f} GB, "
        f"{st['processes']} processes, {st['partitions']} partition(s)"
    )
    if st["executor"] == "ray":
        print(
            f"ray: tasks ran on {st['task_nodes']} node(s); driver peak RSS {st['driver_peak_rss_gb']:.2f} GB, "
            f"worker peak RSS up to {max(st['worker_peak_rss_gb'].values()):.2f} GB"
        )
    by_len = np.bincount(res.lengths.astype(np.int64), minlength=a.max_n + 1)
    print("by length: " + ", ".join(f"n={n}: {by_len[n]:,}" for n in range(2, a.max_n + 1)))
    print(f"lowest kept count: {int(res.counts[-1])}")
    if len(res.counts) < a.num_fgrams:
        print(
            f"warning: only {len(res.counts):,} n-grams occur {a.min_count} times or more, fewer than the "
            f"{a.num_fgrams:,} asked for; the vocabulary holds all of them",
            file=sys.stderr,
        )
    return 0


def tag_main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(
        prog="tag_fgrams.py", description="Pre-tag token files with their longest f-gram matches."
    )
    p.add_argument("--vocab", required=True, type=Path, help="f-gram vocabulary (.safetensors)")
    p.add_argument(
        "--tokens",
        required=True,
        help="a directory made by prepare_data.py, or a glob of token files",
    )
    p.add_argument(
        "--split", default="all", help="split to tag: train, valid or all (default: %(default)s)"
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer name (needed only for bare token files)"
    )
    p.add_argument("--out", required=True, type=Path, help="sidecar directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing sidecar at --out (never an input)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="one Ray task per token file: on a local Ray runtime (no ADDRESS), on the cluster this "
        "machine belongs to (auto) or at host:port; every node must reach --tokens and --out at the same paths",
    )
    a = p.parse_args(argv)
    refuse_overlap(a.out, {"the token files": a.tokens, "the f-gram vocabulary": a.vocab})
    if a.overwrite:
        refuse_foreign(
            a.out, "an f-gram sidecar", lambda d: (d / TAGS_MANIFEST).is_file(), "tag_fgrams.py"
        )
    vocab = load_vocab(a.vocab)
    splits = ["train", "valid"] if a.split == "all" else [a.split]
    # bare token files (a glob, as OLMo's data.paths) have no splits
    if not Path(a.tokens).is_dir():
        splits = splits[:1]
    groups = [open_token_files(a.tokens, s, a.tokenizer) for s in splits]
    files = groups[0]
    for g in groups[1:]:
        files.files.extend(g.files)
    with OutputLock(a.out, "--out"):  # one writer per output; removes a killed run's temporaries
        meta = tag_token_files(files, vocab, a.vocab, a.out, a.overwrite, ray_address=a.ray)
    print(
        f"tagged {meta['positions']:,} positions in {len(meta['files'])} files: "
        f"{meta['matched_fraction']:.1%} end an f-gram; {meta['wall_time_s']:.1f} s -> {a.out}",
        file=sys.stdout,
    )
    return 0
