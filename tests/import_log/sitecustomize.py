"""Test helper: with OLMO_SCONE_IMPORT_LOG=DIR, every Python process started with this folder on
PYTHONPATH writes the top-level names of the modules it imported to DIR/<pid>.txt at exit (the GPU
kit's test: everything the GPU runs import must be in the kit or the image)."""

import atexit
import os
import sys


def _dump() -> None:
    out = os.environ.get("OLMO_SCONE_IMPORT_LOG")
    if out:
        names = sorted({m.split(".")[0] for m in list(sys.modules)})
        with open(os.path.join(out, f"{os.getpid()}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")


atexit.register(_dump)
