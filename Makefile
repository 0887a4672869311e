# olmo-scone: `make setup` once, then `make test`; `make demo` runs the main job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= runs/demo

.PHONY: setup test test-fast demo data-demo clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23" "setuptools>=70" wheel
	# torch first and on its own: the CPU build here, the CUDA build on a GPU box.
	$(PIP) install -q torch==2.13.0
	# deepspeed ships as an sdist whose setup.py imports torch: build it against
	# the torch above (no isolated build env, which would pull another torch).
	$(PIP) install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	$(PY) -c "import olmo, olmo_data, deepspeed, safetensors, wandb, olmo_scone"
	test -x $(VENV)/bin/dolma
	@echo "olmo-scone environment OK"

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

demo: data-demo

# Stage 1 of the demo: the embedded default corpus, tokenized, with statistics.
data-demo:
	$(PY) scripts/prepare_data.py --out $(DEMO_DIR)/data

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
