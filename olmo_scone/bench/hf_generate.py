"""``scripts/benchmark_hf_generate.py``: a decode step through ``transformers.generate`` (the
Hugging Face class of an exported folder) against the project's own KV-cache loop
(:func:`olmo_scone.serving.generate.generate`), side by side on the same exported model.

The model is ``configs/olmo/tiny-scone.yaml``'s (random weights: speed does not depend on them) with
a real 200K-f-gram vocabulary of the embedded corpus, served from RAM and memory-mapped. Both
decoders run greedy with a KV cache on the same real prompts; ms per step = wall time of
``--new-tokens`` steps / ``--new-tokens`` (median over interleaved rounds). Both produce the same
tokens (checked in the run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .common import REPO, machine, table
from .inference import interleaved


def _export(work: Path, data: Path, num_fgrams: int) -> Path:
    from ..config import SconeTrainConfig, load_config
    from ..data.sources import open_token_files
    from ..export import export_model
    from ..fgrams.counting import CountSettings, TokenSource, count_fgrams
    from ..fgrams.vocab import load_vocab, save_vocab
    from ..model import SconeOLMo

    out = work / "served"
    if (out / "manifest.json").is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    files = open_token_files(str(data), "train")
    r = count_fgrams(
        [TokenSource(f.path, f.dtype, f.length) for f in files.files],
        50280,
        50279,
        1,
        CountSettings(num_fgrams=num_fgrams, min_count=2),
    )
    vpath = work / "fgrams.safetensors"
    save_vocab(
        vpath, r.tokens, r.lengths, r.counts, {"tokenizer_sha256": files.tokenizer["sha256"]}
    )
    cfg = load_config(
        SconeTrainConfig, REPO / "configs/olmo/tiny-scone.yaml", [f"model.fgram.vocab_path={vpath}"]
    )
    cfg.save(work / "config.yaml")
    torch.manual_seed(0)
    model = SconeOLMo(cfg.model, fgram_vocab=load_vocab(vpath)).eval()
    export_model(model, cfg, work / "config.yaml", out, dtype="bf16", batch_size=4096)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from transformers import AutoModelForCausalLM

    from ..data.sources import open_token_files
    from ..serving.generate import generate
    from ..serving.runtime import ServedModel

    p = argparse.ArgumentParser(
        prog="benchmark_hf_generate.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--data",
        type=Path,
        default=REPO / "runs" / "demo" / "data",
        help="token directory (make demo's)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "bench-hf-generate",
        help="folder for the benchmark's model and data",
    )
    p.add_argument("--num-fgrams", type=int, default=200_000, help="S of the benchmark's model")
    p.add_argument("--prompt-len", type=int, default=32, help="prompt length (tokens)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per round")
    p.add_argument(
        "--rounds", type=int, default=7, help="timed rounds, alternating the two decoders"
    )
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    out = _export(a.work, a.data, a.num_fgrams)
    valid = np.concatenate(
        [
            np.asarray(np.memmap(f.path, dtype=f.dtype, mode="r"), dtype=np.int64)
            for f in open_token_files(str(a.data), "valid").files
        ]
    )
    print(
        f"# transformers.generate against the project's decode loop  ({machine()}, torch threads {torch.get_num_threads()})"
    )
    rows = []
    for mode in ("ram", "mmap"):
        served = ServedModel(out, mode=mode)
        hf = AutoModelForCausalLM.from_pretrained(
            str(out), trust_remote_code=True, fgram_table=mode
        ).eval()
        for batch in (1, 8):
            prompts = [valid[i * 997 : i * 997 + a.prompt_len].tolist() for i in range(batch)]
            ids = torch.tensor(prompts)
            ours = generate(served, prompts, a.new_tokens)
            theirs = hf.generate(
                ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False
            )
            assert theirs[:, a.prompt_len :].tolist() == ours, "the two decoders disagree"

            def run_ours():
                t0 = time.perf_counter()
                generate(served, prompts, a.new_tokens)
                return time.perf_counter() - t0

            def run_hf():
                t0 = time.perf_counter()
                hf.generate(
                    ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False
                )
                return time.perf_counter() - t0

            med = interleaved({"ours": run_ours, "transformers": run_hf}, a.rounds)
            rows.append(
                [
                    mode,
                    batch,
                    f"{med['ours'] / a.new_tokens * 1e3:.2f}",
                    f"{med['transformers'] / a.new_tokens * 1e3:.2f}",
                    f"{med['ratio']:.2f}x",
                ]
            )
    print(
        f"\n## Greedy decode, prompt {a.prompt_len} tokens, {a.new_tokens} new tokens, KV cache; ms per step (median of {a.rounds} rounds)"
    )
    print(
        table(
            rows,
            [
                "table",
                "batch",
                "project loop ms",
                "transformers.generate ms",
                "transformers / project",
            ],
        )
    )
    return 0
