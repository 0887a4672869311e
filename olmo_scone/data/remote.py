"""Named remote sources for real runs (the public Dolma v1.6 sample), with an offline path.

Files are fetched with OLMo's own ``cached_path`` (which caches them). On a machine
without network access this fails at once with a message that says so and how to
point at local files instead, rather than hanging in retries. Offline is detected
from ``OLMO_SCONE_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) without touching the network,
otherwise by a short connection probe to the host.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import List
from urllib.parse import urlparse

from ..errors import fail

# The Dolma v1.6 sample (~10B tokens, ~16 GB gzip), as listed in allenai/dolma's urls/v1_6-sample.txt.
DOLMA_SAMPLE_URL = "https://olmo-data.org/dolma-v1_6-8B-sample/v1_5r2_sample-{index:04d}.json.gz"
REMOTE_SOURCES = {"dolma-v1_6-sample": DOLMA_SAMPLE_URL}


def remote_urls(source: str, shards: int) -> List[str]:
    if source not in REMOTE_SOURCES:
        fail(f"unknown remote source {source!r}; choose one of: {', '.join(REMOTE_SOURCES)}")
    if shards < 1:
        fail(f"--remote-shards must be >= 1, got {shards}")
    return [REMOTE_SOURCES[source].format(index=i) for i in range(shards)]


def offline_reason(url: str, timeout: float = 3.0) -> str | None:
    """Why ``url`` cannot be reached from here, or ``None`` if it looks reachable."""
    for var in ("OLMO_SCONE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.__class__.__name__}: {e})"


def fetch_remote(source: str, shards: int) -> List[Path]:
    """Download (or reuse from the cache) the first ``shards`` files of a named source."""
    from cached_path import cached_path, find_latest_cached

    urls = remote_urls(source, shards)
    paths: List[Path] = []
    for url in urls:
        cached = find_latest_cached(url)
        if cached is not None:
            paths.append(Path(cached))
            continue
        reason = offline_reason(url)
        if reason is not None:
            fail(
                f"the {source} source needs the network to fetch {url}, but this machine is offline "
                f"({reason}). Download the files elsewhere and pass them as local paths, e.g. "
                f"`scripts/prepare_data.py path/to/*.json.gz --out DIR`, or use the embedded default "
                f"corpus (no --remote)."
            )
        paths.append(Path(cached_path(url, quiet=False)))
    return paths
