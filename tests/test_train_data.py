"""Training batches: fixed order by (seed, step, world size), sidecar alignment and checks."""

from __future__ import annotations

import numpy as np
import pytest

from olmo_scone.errors import SconeError
from olmo_scone.fgrams.vocab import load_vocab, save_vocab
from olmo_scone.train.data import TrainBatches

SEQ = 64


@pytest.fixture(scope="module")
def tagged(prepared, tagged_vocab):
    """(token files, vocabulary, folder holding tags/): conftest's real-text vocabulary and tags."""
    return prepared, load_vocab(tagged_vocab.vocab), tagged_vocab.root


def test_global_batch_depends_only_on_seed_step_and_not_on_world_size(tagged):
    prepared, vocab, d = tagged
    kw = dict(seq_len=SEQ, global_batch=16, micro_batch=2, seed=3)
    one = TrainBatches(prepared.root, world_size=1, rank=0, **kw)
    two = [TrainBatches(prepared.root, world_size=2, rank=r, **kw) for r in (0, 1)]
    for step in (0, 1, 7, one.steps_per_epoch + 2):  # also across an epoch boundary
        whole = np.concatenate([b["input_ids"].numpy() for b in one.micro_batches(step)])
        split = np.concatenate([b["input_ids"].numpy() for r in two for b in r.micro_batches(step)])
        assert np.array_equal(whole, split)
        assert len(two[0].micro_batches(step)) == two[0].grad_accum == 4
    again = TrainBatches(prepared.root, world_size=1, rank=0, **kw)
    assert np.array_equal(again.global_indices(5), one.global_indices(5))
    other_seed = TrainBatches(prepared.root, world_size=1, rank=0, **{**kw, "seed": 4})
    assert not np.array_equal(other_seed.global_indices(0), one.global_indices(0))
    # an epoch visits every instance exactly once
    seen = np.concatenate([one.global_indices(s) for s in range(one.steps_per_epoch)])
    assert len(set(seen.tolist())) == len(seen) == one.steps_per_epoch * 16


def test_sidecar_rows_are_aligned_with_tokens(tagged):
    prepared, vocab, d = tagged
    tb = TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=d / "tags", vocab=vocab)
    checked = 0
    for mb in tb.micro_batches(0):
        ids, rows = mb["input_ids"].numpy(), mb["fgram_rows"].numpy()
        for b, t in zip(*np.nonzero(rows >= 0)):
            n = int(vocab.lengths[rows[b, t]])
            if t - n + 1 >= 0:  # f-grams that start inside the instance can be read off it
                assert ids[b, t - n + 1 : t + 1].tolist() == vocab.tokens[rows[b, t], :n].tolist()
                checked += 1
    assert checked > 100


def test_sidecar_checks(tagged, tmp_path):
    prepared, vocab, d = tagged
    other = save_vocab(
        tmp_path / "other.safetensors",
        vocab.tokens[:1000],
        vocab.lengths[:1000],
        vocab.counts[:1000],
        dict(vocab.metadata),
    )
    with pytest.raises(SconeError, match="another f-gram vocabulary"):
        TrainBatches(
            prepared.root,
            SEQ,
            16,
            4,
            1,
            0,
            seed=0,
            tags_dir=d / "tags",
            vocab=load_vocab(tmp_path / "other.safetensors"),
        )
    del other
    with pytest.raises(SconeError, match="not an f-gram sidecar"):
        TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=tmp_path, vocab=vocab)
    with pytest.raises(SconeError, match="not a multiple of device_train_microbatch_size"):
        TrainBatches(prepared.root, SEQ, 16, 3, 1, 0, seed=0)
    import json

    meta = json.loads((d / "tags" / "fgram_tags.json").read_text())
    bad = tmp_path / "tags"
    bad.mkdir()
    (bad / "fgram_tags.json").write_text(json.dumps({**meta, "tokens_fingerprint": "x"}))
    with pytest.raises(SconeError, match="made from other token files"):
        TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=bad, vocab=vocab)


def test_rows_at_instance_starts_equal_in_instance_matching(tagged):
    """The trainer's rows for a batch are what evaluation and serving would match on the instance
    alone, at every position, including the first K-1 (the sidecar was tagged over whole files);
    checked against the naive reference matcher on real text."""
    from olmo_scone.fgrams.reference import longest_matches

    prepared, vocab, d = tagged
    tb = TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=d / "tags", vocab=vocab)
    fgrams = [tuple(vocab.tokens[r, : vocab.lengths[r]].tolist()) for r in range(len(vocab))]
    for step in (0, 1, 2):
        for mb in tb.micro_batches(step):
            ids, rows = mb["input_ids"].numpy(), mb["fgram_rows"].numpy()
            for b in range(len(ids)):
                want = [r for r, _ in longest_matches(ids[b].tolist(), fgrams, vocab.max_n)]
                assert rows[b].tolist() == want, (step, b)
    # the re-match is not a no-op on this data: some sidecar rows at instance starts reach back
    # before the instance
    changed = 0
    for idx in range(tb.num_instances):
        f = int(np.searchsorted(tb.offsets, idx, side="right") - 1)
        start = (idx - int(tb.offsets[f])) * SEQ
        raw = np.asarray(
            np.memmap(tb.files[f].tags, dtype=np.int32, mode="r")[start : start + vocab.max_n - 1]
        )
        changed += int(np.count_nonzero(raw != tb.instance(idx)["fgram_rows"][: vocab.max_n - 1]))
    assert changed > 0


def test_training_memory_maps_the_sidecars_index(tagged):
    """The batch builder opens the index tag_fgrams.py saved beside the sidecar, memory-mapped
    (shared by a node's ranks through the page cache), not a copy built from the vocabulary."""
    prepared, vocab, d = tagged
    tb = TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=d / "tags", vocab=vocab)
    m = tb.matcher
    assert all(
        isinstance(a.base, np.memmap) for a in (m.index.keys, m.index.values, m.node_row, m.lengths)
    )
    assert m.num_fgrams == len(vocab)


def test_fgram_batch_holds_only_the_batch(tagged):
    """The per-batch tensors: unique rows with their tokens and lengths from the vocabulary, and an
    inverse map that gives back every matched position's row."""
    prepared, vocab, d = tagged
    tb = TrainBatches(prepared.root, SEQ, 16, 4, 1, 0, seed=0, tags_dir=d / "tags", vocab=vocab)
    mb = tb.micro_batches(0)[0]
    fb, rows = mb["fgram_batch"], mb["fgram_rows"].numpy()
    assert fb.rows.tolist() == sorted(set(rows[rows >= 0].tolist()))
    assert np.array_equal(fb.rows.numpy()[fb.inverse.numpy()], rows[rows >= 0])
    assert np.array_equal(fb.matched.numpy(), rows >= 0)
    assert np.array_equal(fb.lengths.numpy(), vocab.lengths[fb.rows.numpy()])
    assert np.array_equal(fb.tokens.numpy(), np.maximum(vocab.tokens[fb.rows.numpy()], 0))
    assert fb.num_unique < int((rows >= 0).sum())  # f-grams repeat within a batch: each runs once
