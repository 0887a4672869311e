"""f-gram counting and matching against the naive reference, on real text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from olmo_scone.fgrams.reference import count_all_ngrams, longest_matches, top_fgrams
from olmo_scone.errors import SconeError
from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
from olmo_scone.fgrams.matching import FgramMatcher
from olmo_scone.fgrams.vocab import FgramVocab, load_vocab, save_vocab

MAX_TOKENS = 150_000  # per test corpus: the pure-Python reference must stay quick


@pytest.fixture(scope="module")
def corpus(prepared, tmp_path_factory):
    """Real token streams: the first ~150K tokens of the train split, cut into 3 files."""
    tokens = np.concatenate([np.asarray(m) for m in prepared.memmaps("train")])[:MAX_TOKENS]
    d = tmp_path_factory.mktemp("fgram-corpus")
    sources = []
    for i, part in enumerate(np.array_split(tokens, 3)):
        p = d / f"part-{i}.npy"
        part.astype(prepared.dtype).tofile(p)
        sources.append(TokenSource(p, prepared.dtype, len(part)))
    return prepared, sources, [np.fromfile(s.path, dtype=prepared.dtype) for s in sources]


def _count(corpus, **kw):
    prepared, sources, _ = corpus
    return count_fgrams(
        sources,
        prepared.tokenizer["vocab_size"],
        prepared.eos_token_id,
        prepared.pad_token_id,
        CountSettings(**kw),
    )


@pytest.fixture(scope="module")
def reference_counter(corpus):
    prepared, _, streams = corpus
    return count_all_ngrams(streams, 5, prepared.eos_token_id, prepared.pad_token_id)


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_fgrams=3000, min_count=5, processes=1),
        # small chunks (boundaries everywhere), 2 workers, and a memory budget that forces disk partitions
        dict(num_fgrams=3000, min_count=5, processes=2, chunk_tokens=7919, memory_gb=0.001),
        # S beyond the survivors: the ranking keeps them all
        dict(num_fgrams=10**6, min_count=5, processes=2, memory_gb=0.001, cut="all"),
    ],
)
def test_counting_equals_brute_force(corpus, reference_counter, kw):
    kw = dict(kw)
    cut = kw.pop("cut", "part")
    got = _count(corpus, max_n=5, **kw)
    if kw.get("memory_gb", 8) < 0.01:
        assert got.stats["partitions"] > 1 and got.stats["chunks"] > 10
    assert (
        got.stats["rank_cut"]["kept"] == cut
    )  # the S-th f-gram's (count, length) group is kept in part
    want = top_fgrams(reference_counter, kw["num_fgrams"], 5)
    rows = [tuple(int(x) for x in r[:n]) for r, n in zip(got.tokens, got.lengths)]
    assert rows == [g for g, _ in want]  # same f-grams, same order (ties broken the same way)
    assert got.counts.tolist() == [c for _, c in want]
    # every n-gram kept by Apriori pruning has the brute-force count (no n-gram lost or miscounted)
    frequent = sum(1 for c in reference_counter.values() if c >= 5)
    assert got.stats["frequent_ngrams"] == frequent
    assert {int(n) for n in got.lengths} == {2, 3, 4, 5}


def test_min_count_and_max_n(corpus, reference_counter):
    got = _count(corpus, max_n=3, num_fgrams=10**9, min_count=20, processes=1)
    ref3 = {g: c for g, c in reference_counter.items() if len(g) <= 3 and c >= 20}
    assert len(got.counts) == len(ref3)
    assert {
        tuple(int(x) for x in r[:n]): int(c) for r, n, c in zip(got.tokens, got.lengths, got.counts)
    } == ref3


def test_top_s_is_closed_under_prefix_and_suffix(corpus):
    got = _count(corpus, max_n=5, num_fgrams=2000, min_count=5, processes=1)
    rows = {tuple(int(x) for x in r[:n]) for r, n in zip(got.tokens, got.lengths)}
    for g in rows:
        if len(g) > 2:
            assert g[:-1] in rows and g[1:] in rows


def test_no_fgram_holds_eos_or_pad(corpus):
    prepared, _, _ = corpus
    got = _count(corpus, max_n=5, num_fgrams=5000, min_count=2, processes=1)
    assert not np.isin(got.tokens, [prepared.eos_token_id, prepared.pad_token_id]).any()


@pytest.fixture(scope="module")
def vocab(corpus):
    got = _count(corpus, max_n=5, num_fgrams=4000, min_count=3, processes=1)
    return FgramVocab(got.tokens, got.lengths, got.counts, {})


def test_numpy_matcher_equals_brute_force(corpus, vocab):
    prepared, _, streams = corpus
    fgrams = [tuple(int(x) for x in r[:n]) for r, n in zip(vocab.tokens, vocab.lengths)]
    m = FgramMatcher(vocab, prepared.tokenizer["vocab_size"])
    for s in streams[:2]:
        s = s[:40_000]
        rows, lens = m.match(s, chunk=4093)  # odd chunk size: matches across chunk edges too
        want = longest_matches(s, fgrams, 5)
        assert rows.tolist() == [r for r, _ in want]
        assert lens.tolist() == [n for _, n in want]
        assert (rows >= 0).mean() > 0.3  # real text: most positions end an f-gram
        # no match crosses a document boundary: the window never holds an EOS
        for i in np.flatnonzero(rows >= 0)[:5000]:
            assert prepared.eos_token_id not in s[i - lens[i] + 1 : i + 1]


def test_matcher_on_non_prefix_closed_vocab(corpus):
    """A hand-made vocabulary whose f-grams' prefixes are absent still matches exactly."""
    prepared, _, streams = corpus
    s = streams[0][:5000]
    picks = [
        tuple(int(x) for x in s[i : i + n])
        for i, n in [(10, 4), (200, 5), (333, 3), (1000, 2), (2000, 5)]
    ]
    picks = [g for g in dict.fromkeys(picks) if prepared.eos_token_id not in g]
    tokens = np.full((len(picks), 5), -1, np.int32)
    for i, g in enumerate(picks):
        tokens[i, : len(g)] = g
    v = FgramVocab(
        tokens, np.array([len(g) for g in picks], np.int8), np.ones(len(picks), np.int64), {}
    )
    rows, lens = FgramMatcher(v, prepared.tokenizer["vocab_size"]).match(s)
    want = longest_matches(s, picks, 5)
    assert rows.tolist() == [r for r, _ in want] and (rows >= 0).sum() >= len(picks)


def test_torch_matcher_equals_numpy(corpus, vocab):
    prepared, _, streams = corpus
    m = FgramMatcher(vocab, prepared.tokenizer["vocab_size"])
    batch = np.stack([streams[0][i * 257 : i * 257 + 256] for i in range(8)]).astype(np.int64)
    rows_t, lens_t = m.to_torch("cpu").match(torch.from_numpy(batch))
    for b in range(len(batch)):
        rows, lens = m.match(batch[b])
        assert rows_t[b].tolist() == rows.tolist()
        assert lens_t[b].tolist() == lens.tolist()


def test_vocab_file_round_trip_and_validation(vocab, tmp_path, prepared):
    p = tmp_path / "v.safetensors"
    sha = prepared.tokenizer["sha256"]
    save_vocab(
        p,
        vocab.tokens,
        vocab.lengths,
        vocab.counts,
        {"tokenizer_sha256": sha, "tokenizer_name": "x", "min_count": 3},
    )
    v = load_vocab(p, tokenizer_sha256=sha)
    assert np.array_equal(v.tokens, vocab.tokens) and np.array_equal(v.counts, vocab.counts)
    assert v.metadata["max_n"] == "5" and v.metadata["min_count"] == "3"
    with pytest.raises(SconeError, match="built with tokenizer x .* rebuild the vocabulary"):
        load_vocab(p, tokenizer_sha256="0" * 64)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(SconeError, match="not a readable safetensors file|corrupt"):
        load_vocab(p)
    with pytest.raises(SconeError, match="not found"):
        load_vocab(tmp_path / "nope.safetensors")


def test_bad_settings(corpus):
    for kw, msg in [
        (dict(max_n=1), "--max-n must be >= 2"),
        (dict(num_fgrams=0), "--num-fgrams must be > 0"),
    ]:
        with pytest.raises(SconeError, match=msg):
            _count(corpus, **kw)
    with pytest.raises(SconeError, match="empty"):
        count_fgrams([], 50280, 50279, 1, CountSettings())


@pytest.mark.parametrize("width", [5, 3, 64])
def test_batch_matcher_equals_brute_force(corpus, vocab, width):
    """Serving matches ``[B, K]`` windows in one pass; each row must be its own stream."""
    prepared, _, streams = corpus
    fgrams = [tuple(int(x) for x in r[:n]) for r, n in zip(vocab.tokens, vocab.lengths)]
    m = FgramMatcher(vocab, prepared.tokenizer["vocab_size"])
    s = streams[0]
    batch = np.stack([s[i * 97 : i * 97 + width] for i in range(40)]).astype(np.int64)
    got = m.match_batch(batch)
    for b in range(len(batch)):
        assert got[b].tolist() == [r for r, _ in longest_matches(batch[b], fgrams, 5)]
    assert (got >= 0).any()
