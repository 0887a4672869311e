# olmo-scone: `make setup` once, then `make test`; `make demo` runs the main job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= runs/demo

.PHONY: setup test test-fast demo data-demo clean bench-fgrams sweep-fgrams sweep-fgram-model

setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23" "setuptools>=70" wheel
	# torch first and on its own: the CPU build here, the CUDA build on a GPU box.
	$(PIP) install -q torch==2.13.0
	# deepspeed ships as an sdist whose setup.py imports torch: build it against
	# the torch above (no isolated build env, which would pull another torch).
	$(PIP) install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	$(PY) -c "import olmo, olmo.eval, olmo_data, deepspeed, safetensors, wandb, olmo_scone"
	test -x $(VENV)/bin/dolma
	@echo "olmo-scone environment OK"

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

DEMO_FGRAMS ?= 200000

demo: data-demo $(DEMO_DIR)/tags/fgram_tags.json

# Stage 1: the embedded default corpus, tokenized, with statistics (a re-run reuses it).
data-demo:
	$(PY) scripts/prepare_data.py --out $(DEMO_DIR)/data

# Stage 2: f-gram vocabulary from the train split; stage 3: sidecar tags for both splits.
$(DEMO_DIR)/fgrams.safetensors: $(DEMO_DIR)/data/manifest.json
	$(PY) scripts/build_fgrams.py --tokens $(DEMO_DIR)/data --num-fgrams $(DEMO_FGRAMS) --overwrite --out $@

$(DEMO_DIR)/tags/fgram_tags.json: $(DEMO_DIR)/fgrams.safetensors
	$(PY) scripts/tag_fgrams.py --vocab $< --tokens $(DEMO_DIR)/data --overwrite --out $(DEMO_DIR)/tags

# Scaling sweeps: SCALE=tiny runs on this CPU (needs `make demo` data); SCALE=olmo-1b|olmo-1.3b
# prints the torchrun commands for NODES nodes of 8 GPUs.
SCALE ?= tiny
NODES ?= 1
sweep-fgrams: $(if $(filter tiny,$(SCALE)),$(DEMO_DIR)/tags/fgram_tags.json)
	$(PY) scripts/sweep.py fgrams --scale $(SCALE) --nodes $(NODES) --plot docs/sweep-tiny-fgrams.png

sweep-fgram-model: $(if $(filter tiny,$(SCALE)),$(DEMO_DIR)/tags/fgram_tags.json)
	$(PY) scripts/sweep.py fgram-model --scale $(SCALE) --nodes $(NODES) --plot docs/sweep-tiny-fgram-model.png

bench-fgrams:
	$(PY) scripts/benchmark_fgrams.py --scale --memory-gb 8

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
