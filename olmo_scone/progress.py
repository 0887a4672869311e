"""One progress-bar factory, so every long loop reports the same way.

Bars go to stderr; when stderr is not a terminal (CI logs) they update rarely, so a
log holds a handful of lines rather than thousands.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 15.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
