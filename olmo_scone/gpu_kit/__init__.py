"""The offline GPU kit (``make gpu-kit``: build.py, packages.py, wheels.py) and the GPU smoke run
(``scripts/gpu_smoke.sh``: smoke.py); docs/gpu.md."""
