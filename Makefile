# One entry point for setup, checks and tests. `make test` works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test check lint typecheck unit emulator clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Build the venv, run the linters and type checks, then the whole test suite.
test: $(STAMP) check
	$(BIN)/python -m pytest

## Lint and type-check.
check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Run the Dataverse Web API emulator in the foreground with seeded data.
emulator: $(STAMP)
	$(BIN)/python -m dataverse_emulator --port $${PORT:-8765} --contacts $${CONTACTS:-20000} --leads $${LEADS:-10000}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
