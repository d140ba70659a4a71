# Two commands: `make demo` (set up + run the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint clean

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

lint: install
	$(BIN)/python -m ruff check src tests

clean:
	rm -rf $(VENV) .engram-demo .pytest_cache
