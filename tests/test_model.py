"""The SCONE model against plain OLMo and naive references, on real text (fp32, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from olmo.model import OLMo

from olmo_scone.config import FgramConfig, SconeModelConfig
from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
from olmo_scone.fgrams.batch import fgram_batch
from olmo_scone.fgrams.vocab import FgramVocab
from olmo_scone.model import SconeOLMo

SEQ = 64


def tiny_config(**fgram) -> SconeModelConfig:
    return SconeModelConfig(
        d_model=64,
        n_heads=4,
        n_layers=2,
        mlp_ratio=4,
        max_sequence_length=SEQ,
        vocab_size=50280,
        embedding_size=50304,
        eos_token_id=50279,
        pad_token_id=1,
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        include_bias=False,
        init_device="cpu",
        fgram=FgramConfig(n_layers=2, max_n=5, **fgram),
    )


@pytest.fixture(scope="module")
def real(prepared):
    tokens = np.concatenate([np.asarray(m) for m in prepared.memmaps("train")])[:200_000]
    path = prepared.root / "model-test-tokens.npy"
    tokens.tofile(path)
    r = count_fgrams(
        [TokenSource(path, tokens.dtype, len(tokens))],
        50280,
        50279,
        1,
        CountSettings(max_n=5, num_fgrams=3000, min_count=3, processes=1),
    )
    vocab = FgramVocab(r.tokens, r.lengths, r.counts, {})
    batch = torch.from_numpy(tokens[: 8 * SEQ].astype(np.int64).reshape(8, SEQ))
    # windows centred on document ends: each row spans two documents
    ends = np.flatnonzero(tokens == 50279)
    ends = ends[(ends > SEQ) & (ends < len(tokens) - SEQ)][:8]
    across = torch.from_numpy(
        np.stack([tokens[e - SEQ // 2 : e + SEQ // 2] for e in ends]).astype(np.int64)
    )
    return vocab, torch.cat([batch, across])


def test_empty_vocabulary_gives_plain_olmo_logits_exactly(real):
    _, batch = real
    empty = FgramVocab(np.zeros((0, 5), np.int32), np.zeros(0, np.int8), np.zeros(0, np.int64), {})
    torch.manual_seed(0)
    scone = SconeOLMo(tiny_config(), fgram_vocab=empty).eval()
    plain = OLMo(tiny_config()).eval()
    missing, unexpected = plain.load_state_dict(scone.state_dict(), strict=False)
    assert not missing and all(k.startswith("fgram_model.") for k in unexpected)
    with torch.no_grad():
        a = scone(batch, match=True).logits
        b = plain(batch).logits
    assert torch.equal(a, b)


def test_dedup_equals_naive_per_position_run(real):
    vocab, batch = real
    torch.manual_seed(0)
    m = SconeOLMo(tiny_config(), fgram_vocab=vocab).eval()
    with torch.no_grad():
        rows = m.match_fgrams(batch)
        assert (rows >= 0).float().mean() > 0.3
        x = m.input_embeddings(batch, fgram_batch(rows, vocab))
        for b in range(batch.shape[0]):
            for t in range(batch.shape[1]):
                r = int(rows[b, t])
                if r < 0:
                    want = m.transformer.wte.weight[batch[b, t]]
                else:  # A_fgram on this one f-gram, alone, tokens taken from the text itself
                    n = int(vocab.lengths[r])
                    toks = batch[b, t - n + 1 : t + 1]
                    assert toks.tolist() == vocab.tokens[r, :n].tolist()
                    want = m.fgram_model(m.transformer.wte(toks)[None], torch.tensor([n]))[0]
                torch.testing.assert_close(x[b, t], want, rtol=1e-5, atol=1e-6)


def test_replacement_not_addition(real):
    vocab, batch = real
    m = SconeOLMo(tiny_config(), fgram_vocab=vocab).eval()
    with torch.no_grad():
        rows = m.match_fgrams(batch)
        x = m.input_embeddings(batch, fgram_batch(rows, vocab))
        tok = m.transformer.wte(batch)
        hit = rows >= 0
        assert torch.equal(x[~hit], tok[~hit])
        emb = m.fgram_embeddings(fgram_batch(rows[hit][None], vocab))  # unique rows, ascending
        uniq, inverse = torch.unique(rows[hit], return_inverse=True)
        torch.testing.assert_close(x[hit], emb[inverse])


def test_inference_from_table_equals_training_forward(real):
    vocab, batch = real
    torch.manual_seed(1)
    m = SconeOLMo(tiny_config(), fgram_vocab=vocab).eval()
    with torch.no_grad():
        want = m(batch, match=True).logits
        table = m.compute_fgram_table(batch_size=512)
        m.use_fgram_table(table, drop_fgram_model=True)
        assert m.fgram_model is None
        got = m(batch, match=True).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradients_reach_fgram_model_and_shared_token_embeddings(real):
    vocab, batch = real
    m = SconeOLMo(tiny_config(), fgram_vocab=vocab).train()
    out = m(batch[:, :-1], match=True).logits
    loss = torch.nn.functional.cross_entropy(
        out.reshape(-1, out.shape[-1]), batch[:, 1:].reshape(-1)
    )
    loss.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in m.fgram_model.parameters()
        if p.requires_grad
    )
    # token embeddings get gradient through A_fgram for tokens that occur only inside matched f-grams too
    g = m.transformer.wte.weight.grad
    rows = m.match_fgrams(batch[:, :-1])
    fgram_only = set(vocab.tokens[rows[rows >= 0].numpy()].reshape(-1).tolist()) - {-1}
    assert g[sorted(fgram_only)].abs().sum() > 0


def test_no_fgram_crosses_a_document_boundary(real):
    vocab, batch = real
    m = SconeOLMo(tiny_config(), fgram_vocab=vocab)
    rows = m.match_fgrams(batch)
    assert (batch == 50279).sum() >= 8  # the batch spans documents
    for b, t in (rows >= 0).nonzero().tolist():
        n = int(vocab.lengths[int(rows[b, t])])
        assert 50279 not in batch[b, t - n + 1 : t + 1].tolist()


def test_identity_init_starts_as_the_baseline_and_then_learns_context(real):
    """fgram.init=identity: before training, every replaced embedding is its last token's own
    embedding, so SCONE's logits equal plain OLMo's; one optimizer step later A_fgram depends on the
    whole f-gram (two f-grams with the same last token get different embeddings)."""
    vocab, batch = real
    torch.manual_seed(0)
    scone = SconeOLMo(tiny_config(init="identity"), fgram_vocab=vocab)
    assert scone.fgram_model.ln_f is None
    plain = OLMo(tiny_config()).eval()
    plain.load_state_dict(scone.state_dict(), strict=False)
    rows = scone.match_fgrams(batch)
    assert (rows >= 0).float().mean() > 0.3  # many positions really are replaced
    with torch.no_grad():
        assert torch.equal(scone.eval()(batch, fgram_rows=rows).logits, plain(batch).logits)
    # the replaced embeddings are the last tokens' embeddings, exactly
    every = fgram_batch(np.arange(len(vocab))[None], vocab)  # every f-gram once
    last = every.tokens[torch.arange(len(vocab)), every.lengths - 1]
    with torch.no_grad():
        assert torch.equal(scone.fgram_embeddings(every), scone.transformer.wte(last))
    scone.train()
    opt = torch.optim.AdamW(scone.parameters(), lr=1e-3)
    for _ in range(2):  # step 1 moves the zero output projections, step 2 everything behind them
        logits = scone(batch[:, :-1], fgram_rows=rows[:, :-1]).logits
        torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        ).backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        emb = scone.fgram_embeddings(every)
        delta = emb - scone.transformer.wte(last)
    assert delta.abs().max() > 0
    # same last token, different f-grams -> different embeddings: the context now matters
    values, counts = torch.unique(last, return_counts=True)
    shared = values[counts > 1][0]
    group = emb[last == shared]
    assert (group - group[0]).abs().amax(dim=1)[1:].min() > 0


def test_unknown_fgram_init_is_an_error():
    """An enum like OLMo's option types: refused in YAML on load, and in Python before a model is built."""
    from olmo_scone.config import SconeTrainConfig, load_config
    from olmo_scone.errors import SconeError

    with pytest.raises(SconeError, match="fgram.init must be one of olmo, identity"):
        SconeOLMo(tiny_config(init="zeros", num_fgrams=10))
    with pytest.raises(
        SconeError, match=r"Invalid value 'zeros', expected one of \[olmo, identity\]"
    ):
        load_config(
            SconeTrainConfig,
            Path(__file__).parents[1] / "configs/olmo/tiny-scone.yaml",
            ["model.fgram.init=zeros"],
        )
