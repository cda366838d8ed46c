# alpcrun developer commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test unit lint typecheck protos bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)                 ## create .venv with alpcrun and its dev tools

demo: $(STAMP)                    ## run the Monte Carlo demo on a local grid
	$(BIN)/alpcrun demo

test: $(STAMP) lint typecheck     ## lint, type-check and run the whole test suite
	$(BIN)/pytest

unit: $(STAMP)                    ## only the fast unit tests
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)                  ## regenerate alpcrun/proto/_gen from protos/
	$(BIN)/python scripts/gen_protos.py

bench: $(STAMP)                   ## throughput and latency benchmark
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
