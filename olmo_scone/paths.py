"""Where this checkout and the shared data live (``OLMO_SCONE_SHARED_DATA`` overrides the latter)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OLMO_SCONE_SHARED_DATA", REPO.parent / "shared" / "data"))
