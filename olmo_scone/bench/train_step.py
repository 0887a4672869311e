"""``scripts/benchmark_train_step.py``: a CPU training step with and without the allocator tuning.

Each round runs the same steps twice, each in a fresh process (the tuning is process-wide and
cannot be undone): once after :func:`olmo_scone.malloc.keep_large_allocations`, once without.
Rounds alternate the order, and the ratio is taken within each round, so a noisy shared machine
moves both sides together. The model is the study's main model ``m`` (OLMo, d 128, 2 layers,
RoPE, seq 128, the 50K-token vocabulary) with AdamW, one thread per process as under
``torchrun --nproc_per_node=2`` on 2 cores. Both sides must reach bit-identical losses.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Dict, Optional, Sequence

from .common import isolated, machine, table


def run_steps(
    tuned: bool, steps: int, micro: int, d_model: int, layers: int, seq: int, threads: int
) -> Dict:
    import torch
    import torch.nn.functional as F
    from olmo.config import ModelConfig
    from olmo.model import OLMo

    from ..malloc import keep_large_allocations

    if tuned and not keep_large_allocations():
        raise RuntimeError("the allocator tuning did not take effect (not glibc?)")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=d_model,
        n_heads=4,
        n_layers=layers,
        mlp_ratio=4,
        max_sequence_length=seq,
        vocab_size=50280,
        embedding_size=50304,
        rope=True,
        weight_tying=True,
        include_bias=True,
        activation_type="gelu",
        init_device="cpu",
        flash_attention=False,
    )
    model = OLMo(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 50280, (micro, seq + 1), generator=g) for _ in range(steps + 1)]

    def step(b):
        logits = model(b[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    step(batches[0])  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    losses = [step(b) for b in batches[1:]]
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall": t1 - t0,
        "user": r1.ru_utime - r0.ru_utime,
        "sys": r1.ru_stime - r0.ru_stime,
        "faults": r1.ru_minflt - r0.ru_minflt,
        "losses": losses,
        "tokens": steps * micro * seq,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmark_train_step.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="timed rounds, alternating the variants")
    p.add_argument("--steps", type=int, default=8, help="training steps per round")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per step")
    p.add_argument("--d-model", type=int, default=128, help="d_model of the timed model")
    p.add_argument("--layers", type=int, default=2, help="layers of the main model and of A_fgram")
    p.add_argument("--seq", type=int, default=128, help="sequence length")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    a = p.parse_args(argv)
    args = (a.steps, a.micro_batch, a.d_model, a.layers, a.seq, a.threads)
    print(f"# training-step benchmark: allocator tuning on/off  ({machine()})")
    print(
        f"model d {a.d_model}, {a.layers} layers, seq {a.seq}, micro-batch {a.micro_batch}, {a.threads} thread(s); "
        f"{a.steps} steps a side a round, {a.rounds} rounds, order alternating\n"
    )
    rows, ratios = [], []
    for i in range(a.rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        res = {t: isolated(run_steps, t, *args)["result"] for t in order}
        on, off = res[True], res[False]
        if on["losses"] != off["losses"]:
            raise AssertionError(
                f"losses differ with the tuning: {on['losses']} vs {off['losses']}"
            )
        ratios.append(off["wall"] / on["wall"])
        for t in (False, True):
            r = res[t]
            rows.append(
                [
                    str(i + 1),
                    "tuned" if t else "default",
                    f"{r['wall'] / a.steps * 1e3:.0f}",
                    f"{r['tokens'] / r['wall']:,.0f}",
                    f"{r['user']:.2f}",
                    f"{r['sys']:.2f}",
                    f"{r['faults']:,}",
                ]
            )
    print(
        table(
            rows, ["round", "allocator", "ms/step", "tokens/s", "user s", "sys s", "minor faults"]
        )
    )
    print(
        f"\nspeed-up (default wall / tuned wall, per round): {', '.join(f'{r:.2f}x' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f}x; losses bit-identical on both sides"
    )
    return 0
