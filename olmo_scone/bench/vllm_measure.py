"""The vLLM side of ``scripts/benchmark_vllm.py``, run in ``.venv-serve``: one engine on the SCONE
folder, one on the same main model without the table (GPT-2 of vLLM's own), both alive in one
process; for each batch size, rounds alternate the two so that machine noise hits both.

Per round and engine: ``generate`` of B prompts of real text with N new tokens, and of the same
prompts with 1 new token (prefill and the first token); throughput = B x N / time of the first,
time per output token = (difference) / (N - 1). The SCONE/baseline ratio is taken round by round
(paired) and its median reported. Imports vLLM and the plugin only.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..atomic import atomic_write_json
from ..errors import ArgumentParser, positive_int


def _engine(folder: Path, table: Optional[str], kv_mb: int):
    from vllm import LLM

    overrides = {"scone_table": table, "scone_verify": False} if table else None
    return LLM(
        model=str(folder),
        skip_tokenizer_init=True,
        dtype="float32",
        seed=0,
        max_num_seqs=256,
        kv_cache_memory_bytes=kv_mb << 20,
        hf_overrides=overrides,
    )


def _timed(llm, prompts: List[List[int]], new: int) -> float:
    """Seconds of one greedy ``generate`` (the offline tool's, vllm_plugin/offline.py)."""
    from ..vllm_plugin.offline import generate

    return generate(llm, prompts, new, logprobs=False)["wall_s"]


def measure(engines: Dict[str, object], prompts, batch: int, new: int, rounds: int) -> Dict:
    subset = prompts[:batch]
    for llm in engines.values():  # warm-up: compilation, first allocations
        _timed(llm, subset, new)
    full: Dict[str, List[float]] = {k: [] for k in engines}
    first: Dict[str, List[float]] = {k: [] for k in engines}
    for r in range(rounds):
        names = list(engines) if r % 2 == 0 else list(engines)[::-1]
        for name in names:
            full[name].append(_timed(engines[name], subset, new))
            first[name].append(_timed(engines[name], subset, 1))
    out: Dict[str, object] = {"batch": batch, "new_tokens": new, "rounds": rounds}
    for name in engines:
        out[f"{name}_tokens_per_s"] = statistics.median(batch * new / t for t in full[name])
        out[f"{name}_tpot_ms"] = statistics.median(
            (a - b) / (new - 1) * 1e3 for a, b in zip(full[name], first[name])
        )
    out["ratio"] = statistics.median(b / s for s, b in zip(full["scone"], full["baseline"]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--scone", type=Path, required=True, help="the SCONE export's vllm/ folder")
    p.add_argument("--baseline", type=Path, required=True, help="its main model alone (GPT-2)")
    p.add_argument("--prompts", type=Path, required=True, help="JSON list of token-id prompts")
    p.add_argument("--table", choices=("ram", "mmap"), default="ram", help="where the table is")
    p.add_argument("--batches", default="1,8,64", help="batch sizes (comma-separated)")
    p.add_argument("--new-tokens", type=positive_int, default=32, help="tokens generated a prompt")
    p.add_argument("--rounds", type=positive_int, default=5, help="timed rounds per batch size")
    p.add_argument("--kv-cache-mb", type=positive_int, default=2048, help="each engine's KV cache")
    p.add_argument("--out", type=Path, required=True, help="JSON results")
    a = p.parse_args(argv)
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # the plugin's counters
    from ..vllm_plugin.model import served_stats

    prompts = json.loads(a.prompts.read_text())
    engines = {
        "scone": _engine(a.scone, a.table, a.kv_cache_mb),
        "baseline": _engine(a.baseline, None, a.kv_cache_mb),
    }
    rows = []
    for b in (int(x) for x in a.batches.split(",")):
        rows.append(measure(engines, prompts, b, a.new_tokens, a.rounds))
        print(json.dumps(rows[-1]), flush=True)
    stats = served_stats(engines["scone"])
    atomic_write_json(a.out, {"table": a.table, "rows": rows, "scone": stats})
    return 0


if __name__ == "__main__":
    from ..errors import run_cli

    run_cli(main)
