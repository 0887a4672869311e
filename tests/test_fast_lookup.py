"""The compiled decode-step lookup (serving/fast_lookup.py) against the numpy matcher, at every
position of real text, and its deduplication against numpy's."""

from __future__ import annotations

import numpy as np
import pytest

from olmo_scone.fgrams.matching import FgramMatcher
from olmo_scone.fgrams.vocab import load_vocab
from olmo_scone.serving.fast_lookup import CompiledLookup


@pytest.fixture(scope="module")
def matchers(prepared, tagged_vocab):
    m = FgramMatcher(load_vocab(tagged_vocab.vocab), 50280)
    return m, CompiledLookup(m)


def _windows(prepared, split: str, b: int, t: int) -> np.ndarray:
    tokens = np.concatenate([np.asarray(x) for x in prepared.memmaps(split)])
    return tokens[: b * t].astype(np.int64).reshape(b, t)


def test_every_position_of_real_text_matches_the_numpy_matcher(prepared, matchers):
    numpy_m, compiled = matchers
    for split in ("train", "valid"):
        t = _windows(prepared, split, 64, 128)
        want = numpy_m.match_batch(t)
        got = compiled.match_batch(t)
        np.testing.assert_array_equal(got, want)
        # the f-grams of all lengths are there, or this would test little
        lengths = numpy_m.lengths[want[want >= 0]]
        assert (want >= 0).mean() > 0.3 and set(np.unique(lengths)) >= {2, 3, 4}


@pytest.mark.parametrize("batch, width, new", [(1, 5, 1), (64, 5, 1), (7, 40, 13), (3, 2, 2)])
def test_only_the_new_positions_are_matched_as_in_the_whole_window(
    prepared, matchers, batch, width, new
):
    numpy_m, compiled = matchers
    t = _windows(prepared, "valid", batch, width)
    np.testing.assert_array_equal(compiled.match_new(t, new), numpy_m.match_batch(t)[:, -new:])


def test_lookup_deduplicates_as_numpy_does(prepared, matchers):
    numpy_m, compiled = matchers
    t = _windows(prepared, "valid", 64, 5)
    rows = numpy_m.match_batch(t)[:, -1:]
    hit = rows >= 0
    uniq, inverse = np.unique(rows[hit], return_inverse=True)
    got_hit, got_uniq, got_inverse = compiled.lookup(t, 1)
    np.testing.assert_array_equal(got_hit, hit)
    np.testing.assert_array_equal(got_uniq, uniq)
    np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))
    assert len(uniq) < hit.sum()  # repeated f-grams in one step, so deduplication did something


def test_without_numba_the_numpy_lookup_gives_the_same_results(prepared, matchers):
    """Where numba is missing or refuses the numpy (the GPU kit's image), make_lookup falls back."""
    from olmo_scone.serving.fast_lookup import NumpyLookup

    numpy_m, compiled = matchers
    t = _windows(prepared, "valid", 16, 9)
    fallback = NumpyLookup(numpy_m)
    np.testing.assert_array_equal(fallback.match_new(t, 4), compiled.match_new(t, 4))
    for a, b in zip(fallback.lookup(t, 2), compiled.lookup(t, 2)):
        np.testing.assert_array_equal(a, b)


def _request_windows(requests: list, k: int) -> np.ndarray:
    """Each token's window of its own request's last k tokens, -1 before the request's start."""
    out = []
    for r in requests:
        padded = np.concatenate([np.full(k - 1, -1, np.int64), r])
        out += [padded[p : p + k] for p in range(len(r))]
    return np.stack(out)


@pytest.mark.parametrize("lookup", ["compiled", "numpy"])
def test_windows_of_an_engine_batch_match_each_request_as_a_whole(prepared, matchers, lookup):
    """What the vLLM plugin matches: a batch of requests of different lengths, each token with its
    own window of history (the request's start a boundary); every position as the numpy matcher
    gives it on that request's whole sequence."""
    from olmo_scone.serving.fast_lookup import NumpyLookup

    numpy_m, compiled = matchers
    lk = compiled if lookup == "compiled" else NumpyLookup(numpy_m)
    tokens = np.concatenate([np.asarray(x) for x in prepared.memmaps("valid")]).astype(np.int64)
    cuts = np.cumsum([1, 2, 3, 7, 40, 128, 5, 300])
    requests = np.split(tokens[: cuts[-1]], cuts[:-1])
    k = int(numpy_m.max_n)
    want = np.concatenate([numpy_m.match_batch(r[None, :])[0] for r in requests])
    windows = _request_windows(requests, k)
    np.testing.assert_array_equal(lk.match_windows(windows), want)
    # wider windows (more history than any f-gram needs) give the same rows
    np.testing.assert_array_equal(lk.match_windows(_request_windows(requests, k + 3)), want)
    hit, uniq, inverse = lk.lookup_windows(windows)
    np.testing.assert_array_equal(uniq[inverse], want[want >= 0])
    np.testing.assert_array_equal(hit, want >= 0)
    assert (want >= 0).mean() > 0.3 and len(uniq) < hit.sum()
