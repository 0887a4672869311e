"""Shared fixtures: real text for tests (../shared/data when present, else the embedded corpus)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OLMO_SCONE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path | None:
    p = SHARED_DATA.joinpath(*parts)
    return p if p.is_file() else None


@pytest.fixture(scope="session")
def real_corpus() -> tuple[list[str], int | None]:
    """(input files, max_documents): a small real-English corpus.

    Uses the inaugural addresses and State of the Union corpora from ../shared/data when
    present (124 documents, ~0.6M tokens), else the first 3000 documents of the embedded
    default corpus, so the suite also runs on a machine without ../shared.
    """
    files = [shared_file("english-mix", "inaugural.jsonl.gz"), shared_file("english-mix", "state_union.jsonl.gz")]
    if all(files):
        return [str(f) for f in files], None
    from olmo_scone.data.embedded import embedded_corpus_path

    return [str(embedded_corpus_path())], 3000


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, real_corpus):
    """A token directory prepared once per session from :func:`real_corpus`."""
    from olmo_scone.data.prepare import PrepareSettings, prepare

    files, max_docs = real_corpus
    out = tmp_path_factory.mktemp("prepared") / "tokens"
    return prepare(PrepareSettings(sources=files, out=out, valid_fraction=0.1, seed=0, processes=2, max_documents=max_docs))


@pytest.fixture(scope="session")
def wikitext_valid() -> Path:
    """WikiText-103 validation text from ../shared/data (skips the test when absent)."""
    p = shared_file("wikitext", "wiki.valid.tokens")
    if p is None:
        pytest.skip("../shared/data/wikitext not present")
    return p
