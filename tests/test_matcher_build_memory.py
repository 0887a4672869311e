"""The build-memory model of scripts/benchmark_matcher_build.py (what export and tagging need in host
RAM to build the matcher: 1B f-grams is extrapolated from it): fitted on builds measured at one size,
it predicts the peak of builds four times larger, each measured in a fresh process."""

from __future__ import annotations

import pytest

from olmo_scone.bench.common import isolated
from olmo_scone.bench.matcher_build import (
    fit_temporaries,
    measure_build,
    predicted_extra_bytes,
    prefix_closed_vocab,
)

MIX = [0.388, 0.355, 0.172, 0.085]  # lengths 2..5 of a vocabulary counted from english-mix
V = 50_280


def _measure(num: int, prefix_closed: bool) -> dict:
    return isolated(measure_build, {"num": num, "mix": MIX, "prefix_closed": prefix_closed}, V)[
        "result"
    ]


def test_prefix_closed_vocab_has_one_trie_node_per_fgram():
    from olmo_scone.fgrams.matching import FgramMatcher

    vocab = prefix_closed_vocab(20_000, MIX, V)
    rows = {tuple(t[:n]) for t, n in zip(vocab.tokens.tolist(), vocab.lengths.tolist())}
    for t, n in zip(vocab.tokens.tolist(), vocab.lengths.tolist()):
        assert all(tuple(t[:m]) in rows for m in range(2, n))
    assert FgramMatcher(vocab, V).num_nodes == len(rows)


@pytest.mark.slow
@pytest.mark.e2e
def test_build_memory_model_predicts_four_times_larger_builds():
    small = [_measure(300_000, True), _measure(300_000, False)]
    assert small[0]["nodes"] <= 300_000 < 1.5 * 300_000 < small[1]["nodes"]
    per_fgram, per_node = fit_temporaries(small)
    assert per_fgram + per_node > 0
    for prefix_closed in (True, False):
        big = _measure(1_200_000, prefix_closed)
        predicted = predicted_extra_bytes(big["S"], big["nodes"], per_fgram, per_node)
        assert predicted == pytest.approx(big["extra_gb"] * 2**30, rel=0.15)
