"""``scripts/evaluate.py`` and ``scripts/generate.py``: the same flags for SCONE artifacts and baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import (
    ArgumentParser,
    fail,
    non_negative_float,
    non_negative_int,
    positive_int,
    unit_interval,
)
from ..malloc import keep_large_allocations
from .runtime import load_served


def tokenizer_for(cfg):
    """OLMo's tokenizer of a config, from a local file or olmo_data only: nothing is downloaded."""
    from olmo.tokenizer import Tokenizer
    from olmo_data import is_data_file

    ident = cfg.tokenizer.identifier
    if not (Path(ident).is_file() or is_data_file(ident)):
        fail(
            f"tokenizer {ident!r} is neither a local file nor an olmo_data tokenizer "
            "(e.g. tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json); nothing is downloaded"
        )
    return Tokenizer.from_train_config(cfg)


def tokenizer_name(cfg) -> str:
    """A config's tokenizer as :func:`~olmo_scone.data.tokenizers.resolve_tokenizer` takes it: the
    olmo_data name, or the path of a tokenizer file of one's own (what token files must be made with)."""
    from ..data.tokenizers import is_tokenizer_path

    ident = str(cfg.tokenizer.identifier)
    return ident if is_tokenizer_path(ident) else Path(ident).stem


def check_device(device: str) -> None:
    """A device this machine has, checked before anything loads."""
    import torch

    try:
        d = torch.device(device)
    except RuntimeError:
        fail(f"--device {device!r} is not a device (cpu, cuda, cuda:1, ...)")
    if d.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available on this machine")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        fail(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d.type not in ("cpu", "cuda"):
        fail(f"--device {device}: only cpu and cuda are supported")


def read_text_file(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        fail(f"text file not found: {path}")
    try:
        return p.read_text("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{path} is not UTF-8 text (byte {e.start}); convert it first")


def probe_writable(out: Path, size: int = 1 << 16) -> None:
    """Write and remove a small file beside ``out``: a full disk or a read-only folder is found
    before the work whose result would go there."""
    import os
    import tempfile

    from ..atomic import temporary_prefix

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(out.name), dir=out.parent)
    try:
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(tmp)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="a serving artifact (scripts/export_embeddings.py) or a baseline save_folder"
    )
    p.add_argument(
        "--table", choices=["ram", "mmap"], default="ram", help="where the f-gram table lives"
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of the main model (cpu, cuda, cuda:1); the table stays on the host",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the table checksums (huge tables verified before)",
    )


def evaluate_main(argv: Optional[Sequence[str]] = None) -> int:
    keep_large_allocations()
    p = ArgumentParser(prog="evaluate.py", description="Held-out perplexity of a served model.")
    _common(p)
    p.add_argument("--tokens", help="a token directory (prepare_data.py) or a glob of token files")
    p.add_argument(
        "--split", default="valid", help="split of --tokens to evaluate (train or valid)"
    )
    p.add_argument(
        "--text", nargs="*", help="plain-text files, tokenized with the model's tokenizer"
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="sequences per forward")
    p.add_argument(
        "--max-batches",
        type=positive_int,
        default=None,
        help="evaluate at most this many batches (default: all)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the JSON result to this file (atomically)",
    )
    a = p.parse_args(argv)
    check_device(a.device)
    texts = [
        read_text_file(t) for t in a.text or []
    ]  # before the model loads: a bad file is found at once
    if not a.tokens and not texts:
        fail("give --tokens DIR or --text FILE...")
    if a.out is None:
        return _evaluate(a, texts)
    from ..locking import OutputLock

    if a.out.is_dir():
        fail(f"--out {a.out} is a directory; give a file for the JSON result")
    from ..outputs import refuse_foreign, refuse_overlap

    inputs = {"the model": a.model, "the token files": a.tokens}
    inputs.update({f"--text {t}": t for t in a.text or []})
    refuse_overlap(a.out, inputs, new_file_inside=["the model"])
    refuse_foreign(a.out, "an evaluation result", _is_result, "evaluate.py")
    with OutputLock(a.out, "--out"):
        probe_writable(a.out)  # a full disk is found now, not after the whole evaluation
        return _evaluate(a, texts)


#: fp32 logits of a batch are held about three times over (the model's output, the float copy, the
#: loss's log-softmax)
LOGIT_COPIES = 3


def check_batch_memory(batch_size: int, chunks: int, seq: int, vocab: int) -> None:
    """Refuse a ``--batch-size`` whose logits alone would not fit in the memory available now."""
    from ..resources import check_fits_in_memory

    rows = min(batch_size, chunks)
    check_fits_in_memory(
        LOGIT_COPIES * 4 * rows * seq * vocab,
        f"--batch-size {batch_size} ({rows} sequences of {seq} tokens x {vocab:,} logits)",
        "lower --batch-size",
    )


def load_quietly(a):
    """The served model, with whatever loading prints (DeepSpeed's import-time accelerator warning,
    ``zero_to_fp32``'s lines for a baseline save_folder) sent to stderr: stdout is the result's
    (``evaluate.py --json | python -m json.tool``)."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        return load_served(a.model, a.table, a.device, not a.no_verify)


def _is_result(path: Path) -> bool:
    """Whether ``path`` holds an earlier ``evaluate.py --out`` result (what it may replace)."""
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(r, dict) and {"perplexity", "loss", "tokens", "model"} <= set(r)


def _evaluate(a, texts) -> int:
    from .evaluate import chunks_from_tokens, perplexity, token_streams

    served = load_quietly(a)
    seq = served.cfg.model.max_sequence_length
    if a.tokens:
        streams = token_streams(
            a.tokens, a.split, tokenizer_name(served.cfg)
        )  # refuses another tokenizer's files
    else:
        tok = tokenizer_for(served.cfg)
        streams = [
            np.asarray(tok.encode(t, add_special_tokens=True), dtype=np.int64) for t in texts
        ]
    chunks = chunks_from_tokens(streams, seq)
    check_batch_memory(
        a.batch_size,
        len(chunks),
        seq,
        served.cfg.model.embedding_size or served.cfg.model.vocab_size,
    )
    r = perplexity(served, chunks, a.batch_size, a.max_batches)
    r["model"] = str(a.model)
    if a.out is not None:
        from ..atomic import atomic_write_json

        atomic_write_json(a.out, r)
    print(
        json.dumps(r)
        if a.json
        else f"perplexity {r['perplexity']:.3f} (loss {r['loss']:.4f}) over {r['tokens']:,} tokens"
    )
    return 0


def generate_main(argv: Optional[Sequence[str]] = None) -> int:
    from .generate import generate

    p = ArgumentParser(
        prog="generate.py", description="Continue prompts with a served model (KV cache)."
    )
    _common(p)
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for a batch)")
    p.add_argument(
        "--max-new-tokens", type=positive_int, default=32, help="tokens to generate per prompt"
    )
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0: greedy")
    p.add_argument(
        "--top-k",
        type=non_negative_int,
        default=0,
        help="sample from the k most likely tokens (0: all)",
    )
    p.add_argument(
        "--top-p",
        type=unit_interval,
        default=1.0,
        help="nucleus sampling: the smallest set of tokens with this much probability (1: all)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="sampling seed (the same seed, the same tokens)"
    )
    a = p.parse_args(argv)
    check_device(a.device)
    if any(not t for t in a.prompt):
        fail("--prompt is empty: give some text to continue")
    served = load_quietly(a)
    tok = tokenizer_for(served.cfg)
    prompts = [tok.encode(t, add_special_tokens=False) for t in a.prompt]
    outs = generate(
        served,
        prompts,
        a.max_new_tokens,
        a.temperature,
        a.top_k,
        a.top_p,
        eos_token_id=served.cfg.model.eos_token_id,
        seed=a.seed,
    )
    for text, ids in zip(a.prompt, outs):
        print(f"{text}{tok.decode(ids)}")
    return 0
