# ragkit: `make demo` and `make test` work on a fresh machine with Python 3.11 and the
# package registries. torch is pinned to the 2.13.0 CPU build *before* anything that depends
# on it, so pip never resolves an unpinned torch (a multi-GB CUDA build).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
TORCH := torch==2.13.0

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow redis bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-local: pyproject.toml | $(BIN)/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[local]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[local,dev,docs,langchain,llamaindex,ray,chroma,weaviate,redis,milvus,qdrant]"
	touch $@ $(VENV)/.installed-local

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PIP) install -q -e ".[local,dev,docs,langchain,llamaindex,ray,chroma,weaviate,redis,milvus,qdrant,bench]"
	touch $@

demo: $(VENV)/.installed-local
	$(BIN)/python cookbook/demo.py

# Services the tests start themselves (on 127.0.0.1, free ports, stopped by pid): redis-server
# from Debian's packages, and `chroma run` from the chroma extra.
redis:
	@command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)

test: $(VENV)/.installed-test redis
	$(BIN)/ruff check ragkit tests bench cookbook
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbmake --nbmake-timeout=900 cookbook

# The long variants (the 50-trial SIGKILL matrix per write operation, 100 crash-and-reopen
# trials of a sharded store, 200 reader opens during optimize, 100 backups under a writer):
# not part of make test.
test-slow: $(VENV)/.installed-test redis
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/bench_local.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
