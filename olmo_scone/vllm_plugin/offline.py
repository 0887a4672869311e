"""Offline generation with vLLM from token-id prompts: ``scripts/vllm_generate.py``, run in
``.venv-serve``. The plugin's equivalence tests and the throughput benchmark use it; it is also
the shortest way to check a folder before ``vllm serve``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from ..atomic import atomic_write_json
from ..errors import ArgumentParser, fail, positive_float, positive_int
from ..outputs import refuse_overlap


def engine(folder: Path, args) -> "object":
    """A ``vllm.LLM`` on ``folder`` (an export's ``vllm/``), with the options the tests vary."""
    from vllm import LLM

    overrides = {}
    if args.table is not None:
        overrides["scone_table"] = args.table
    if args.no_verify:
        overrides["scone_verify"] = False
    kwargs = dict(
        model=str(folder),
        skip_tokenizer_init=True,
        dtype=args.dtype,
        enforce_eager=args.eager,
        enable_prefix_caching=not args.no_prefix_caching,
        max_num_seqs=args.max_num_seqs,
        seed=0,
        disable_log_stats=False,
        hf_overrides=overrides or None,
    )
    if args.block_size is not None:
        kwargs["block_size"] = args.block_size
    kwargs["kv_cache_memory_bytes"] = int(args.kv_cache_mb * 2**20)
    if args.max_num_batched_tokens is not None:
        kwargs.update(
            max_num_batched_tokens=args.max_num_batched_tokens, enable_chunked_prefill=True
        )
    return LLM(**kwargs)


def counters(llm) -> dict:
    """vLLM's own counters that say whether a feature was exercised (preemptions, prefix-cache
    hits) and the plugin's (tokens matched, rows gathered)."""
    from .model import served_stats

    out = {}
    for m in llm.get_metrics():
        if m.name in (
            "vllm:num_preemptions",
            "vllm:prefix_cache_hits",
            "vllm:prefix_cache_queries",
        ):
            out[m.name.split(":")[1]] = getattr(m, "value", None)
    out["scone"] = served_stats(llm)
    return out


def generate(llm, prompts, max_new_tokens: int, logprobs: bool) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(
        max_tokens=max_new_tokens,
        temperature=0.0,
        ignore_eos=True,
        logprobs=0 if logprobs else None,
    )
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    wall = time.perf_counter() - t0
    tokens = [list(o.outputs[0].token_ids) for o in outs]
    result = {"tokens": tokens, "wall_s": wall}
    if logprobs:
        result["logprobs"] = [
            [step[t].logprob for step, t in zip(o.outputs[0].logprobs, toks)]
            for o, toks in zip(outs, tokens)
        ]
    return result


def generate_main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path, help="an export's vllm/ folder (or any model vLLM serves)")
    p.add_argument("--prompts", type=Path, required=True, help="JSON list of token-id lists")
    p.add_argument(
        "--out", type=Path, required=True, help="JSON file of tokens, logprobs, counters"
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=16, help="tokens per prompt")
    p.add_argument("--logprobs", action="store_true", help="also each generated token's logprob")
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="submit the prompts this many times (prefix caching)",
    )
    p.add_argument(
        "--table",
        choices=("ram", "mmap"),
        default=None,
        help="where the f-gram table is (default: the folder's config)",
    )
    p.add_argument(
        "--no-verify", action="store_true", help="skip the table's checksums at start-up"
    )
    p.add_argument("--dtype", default="float32", help="vLLM's --dtype")
    p.add_argument("--eager", action="store_true", help="vLLM's enforce_eager (no torch.compile)")
    p.add_argument(
        "--no-prefix-caching", action="store_true", help="turn vLLM's prefix caching off"
    )
    p.add_argument(
        "--block-size",
        type=positive_int,
        default=None,
        help="KV-cache block size in tokens (default: vLLM's; 32 or a multiple on the CPU)",
    )
    p.add_argument("--max-num-seqs", type=positive_int, default=64, help="requests batched at once")
    p.add_argument(
        "--max-num-batched-tokens",
        type=positive_int,
        default=None,
        help="token budget a step (chunked prefill when below a prompt's length)",
    )
    p.add_argument(
        "--kv-cache-mb",
        type=positive_float,
        default=64.0,
        help="KV-cache size in MiB (given, so that vLLM does not reserve a share of host memory; small: requests are preempted)",
    )
    args = p.parse_args(argv)
    if (args.folder / "manifest.json").is_file() and (args.folder / "vllm").is_dir():
        fail(
            f"{args.folder} is an exported folder: vLLM serves its vllm/ folder, {args.folder / 'vllm'}"
        )
    if not (args.folder / "config.json").is_file():
        fail(f"{args.folder} has no config.json: give an export's vllm/ folder")
    refuse_overlap(args.out, {"the prompts": args.prompts, "the model folder": args.folder})
    prompts = json.loads(args.prompts.read_text())
    # the plugin's counters come back from the engine's worker as a function call (counters()):
    # vLLM pickles it only when allowed; these are this tool's own processes on one machine
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    llm = engine(args.folder, args)
    runs = [generate(llm, prompts, args.max_new_tokens, args.logprobs) for _ in range(args.repeat)]
    out = {**runs[-1], "runs": [{"tokens": r["tokens"], "wall_s": r["wall_s"]} for r in runs]}
    out["counters"] = counters(llm)
    atomic_write_json(args.out, out)
    return 0
