"""Experiments built on the library: ``make demo`` (demo.py), the CPU reproduction study (repro.py,
its report in repro_report.py), the scaling sweeps (sweeps.py), the tiny CPU training recipe they
share (tiny.py), the paper's model table behind ``configs/olmo/*.yaml`` (model_configs.py) and the
accounting summary (model_summary.py). Nothing in the library imports from here
(tests/test_structure.py checks it)."""
