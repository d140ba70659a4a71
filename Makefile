# Two commands: `make demo` (set up + run the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint bench-quick clean

$(BIN)/engram: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build: sentence-transformers would otherwise pull a CUDA one
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/engram

install: $(BIN)/engram

demo: install
	ENGRAM_HOME=$${ENGRAM_HOME:-$(CURDIR)/.engram-demo} $(BIN)/engram demo

test: install
	$(BIN)/python -m pytest -q

# The quick benchmarks CI runs (activation KV caches, parametric LoRA); results go to a
# temporary folder so docs/benchmarks.md is not rewritten.
BENCH_OUT ?= $(shell mktemp -d)
bench-quick: install
	$(BIN)/engram bench kv --quick --results $(BENCH_OUT) --doc $(BENCH_OUT)/benchmarks.md --json > $(BENCH_OUT)/kv.json
	$(BIN)/engram bench parametric --quick --results $(BENCH_OUT) --doc $(BENCH_OUT)/benchmarks.md --json > $(BENCH_OUT)/parametric.json
	$(BIN)/python -c "import json,sys; kv=json.load(open('$(BENCH_OUT)/kv.json')); p=json.load(open('$(BENCH_OUT)/parametric.json')); assert kv['methods'] and kv['ttft'] and p['methods'], 'empty benchmark result'; print('bench-quick:', len(kv['methods']), 'KV methods,', len(p['methods']), 'LoRA methods')"

lint: install
	$(BIN)/python -m ruff check src tests

clean:
	rm -rf $(VENV) .engram-demo .pytest_cache
