"""Each token's history read back through the KV-cache slots (serving/slot_history.py), against
the requests' own token sequences, in a simulated engine: requests of real text prefilled in
chunks while others decode, blocks handed out in shuffled order, a prefix shared from another
request's blocks, a request preempted and recomputed in other blocks, freed blocks reused."""

from __future__ import annotations

import numpy as np
import pytest

from olmo_scone.serving.slot_history import SlotTokenHistory

BS, K = 4, 5


class Engine:
    """Just enough of an engine's bookkeeping: block tables, and which tokens a step schedules."""

    def __init__(self, num_blocks: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.free = list(self.rng.permutation(num_blocks))
        self.blocks: dict = {}
        self.done: dict = {}
        self.history = SlotTokenHistory(K)

    def add(self, name, shared_from=None, shared_blocks: int = 0):
        self.blocks[name] = list(self.blocks[shared_from][:shared_blocks]) if shared_from else []
        self.done[name] = shared_blocks * BS

    def preempt(self, name):
        self.free += self.blocks[name]
        self.blocks[name], self.done[name] = [], 0

    def step(self, seqs: dict, budget: dict) -> None:
        """Schedule ``budget[name]`` tokens of each named request; check every token's window."""
        ids, pos, qsl, table, want = [], [], [0], [], []
        for name, n in budget.items():
            lo = self.done[name]
            hi = min(lo + n, len(seqs[name]))
            while len(self.blocks[name]) * BS < hi:
                self.blocks[name].append(self.free.pop())
            for p in range(lo, hi):
                ids.append(seqs[name][p])
                pos.append(p)
                want.append([seqs[name][q] if q >= 0 else -1 for q in range(p - K + 1, p + 1)])
            qsl.append(qsl[-1] + hi - lo)
            table.append(self.blocks[name])
            self.done[name] = hi
        width = max(len(t) for t in table)
        bt = np.array([t + [0] * (width - len(t)) for t in table])
        req = np.repeat(np.arange(len(table)), np.diff(qsl))
        p = np.array(pos, dtype=np.int64)
        slots = bt[req, p // BS] * BS + p % BS
        got = self.history.windows(np.array(ids), p, np.array(qsl), bt, slots, BS)
        np.testing.assert_array_equal(got, np.array(want))


@pytest.fixture(scope="module")
def text(prepared):
    return np.concatenate([np.asarray(x) for x in prepared.memmaps("valid")]).astype(np.int64)


def test_history_through_chunks_decoding_prefix_sharing_and_preemption(text):
    eng = Engine(num_blocks=64, seed=0)
    seqs = {
        "a": text[:40].tolist(),
        "b": text[:8].tolist() + text[500:530].tolist(),  # shares a's first two blocks
        "c": text[1000:1037].tolist(),
        "d": text[2000:2030].tolist(),
    }
    eng.add("a")
    eng.add("c")
    eng.step(seqs, {"a": 13, "c": 6})  # two prefill chunks
    eng.step(seqs, {"a": 13, "c": 30})  # a's second chunk, c's prefill to its end
    eng.add("b", shared_from="a", shared_blocks=2)  # prefix cache hit: 8 tokens not recomputed
    eng.step(seqs, {"a": 14, "b": 5, "c": 1})  # c decodes
    eng.step(seqs, {"b": 7, "c": 1})
    eng.preempt("c")  # its blocks freed; d gets some of them and overwrites their slots
    eng.add("d")
    eng.step(seqs, {"b": 100, "d": 30})
    eng.add("c")  # resumed: recomputed from its start, in other blocks
    eng.step(seqs, {"c": 20, "d": 1})
    for n in (9, 8):
        eng.step(seqs, {"c": n})
    assert all(eng.done[n] == len(s) for n, s in seqs.items())


def test_a_layout_it_does_not_know_stops_the_step(text):
    h = SlotTokenHistory(K)
    ids, pos = text[:6], np.arange(6)
    table = np.array([[3, 7]])
    slots = table[0, pos // BS] * BS + pos % BS
    h.windows(ids, pos, np.array([0, 6]), table, slots, BS)
    with pytest.raises(RuntimeError, match="disagrees with its block table"):
        h.windows(ids, pos, np.array([0, 6]), table, slots + 1, BS)
