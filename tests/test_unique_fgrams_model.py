"""The unique-f-gram model of scripts/benchmark_unique_fgrams.py against brute-force sampling: the
expected number of distinct f-grams among N positions, each the longest match of f-gram r with
probability p_r (else none), computed in closed form and with rank bins, equals what drawing the
positions gives."""

from __future__ import annotations

import numpy as np
import pytest

from olmo_scone.bench.unique_fgrams import extrapolated_unique, occupancy


def _sampled(p: np.ndarray, n: int, trials: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    probs = np.append(p, 1 - p.sum())  # the last outcome: no f-gram ends here
    out = []
    for _ in range(trials):
        draws = rng.choice(len(probs), size=n, p=probs)
        out.append(len(np.unique(draws[draws < len(p)])))
    return float(np.mean(out))


@pytest.mark.parametrize("n", [200, 5_000, 100_000])
def test_occupancy_equals_sampling(n):
    r = np.arange(1, 20_001, dtype=np.float64)
    p = 0.7 * r**-0.84 / np.sum(r**-0.84)
    assert occupancy(p, n) == pytest.approx(_sampled(p, n, trials=20), rel=0.02)


def test_binned_extrapolation_equals_the_exact_sum():
    """The rank-binned sum used to reach S = 1B agrees with the exact sum where both can be computed."""
    s, alpha, matched, n = 300_000, 0.84, 0.7, 4_194_304
    r = np.arange(1, s + 1, dtype=np.float64)
    exact = occupancy(matched * r**-alpha / np.sum(r**-alpha), n)
    assert extrapolated_unique(alpha, n, s, matched) == pytest.approx(exact, rel=0.01)
    # and it never exceeds the matched positions, however large S gets
    assert extrapolated_unique(alpha, n, 10**9, matched) <= matched * n
