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
	COLUMNS=$${COLUMNS:-80} $(BIN)/python -m pytest -q

# The quick benchmarks by hand (tests/test_readme.py runs them in the suite); results go to a
# temporary folder so docs/benchmarks.md is not rewritten.
bench-quick: install
	out=$$(mktemp -d) && \
	$(BIN)/engram bench kv --quick --results $$out --doc $$out/benchmarks.md --json > $$out/kv.json && \
	$(BIN)/engram bench parametric --quick --jobs 2 --results $$out --doc $$out/benchmarks.md --json > $$out/parametric.json && \
	$(BIN)/python -c "import json, sys; kv = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2])); assert kv['methods'] and kv['ttft'] and p['methods'], 'empty result'; print('bench-quick:', len(kv['methods']), 'KV methods,', len(p['methods']), 'LoRA methods')" $$out/kv.json $$out/parametric.json

lint: install
	$(BIN)/python -m ruff check src tests
	$(BIN)/python -m mypy src

clean:
	rm -rf $(VENV) .engram-demo .pytest_cache
