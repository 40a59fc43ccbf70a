# One entry point for setup, checks and tests. `make test` works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NPM_STAMP := node_modules/.package-lock.json

.PHONY: test check lint typecheck node browser demo bench emulator clean infra-check audit

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Azurite (pinned in package-lock.json) for the storage and engine integration tests.
$(NPM_STAMP): package.json $(wildcard package-lock.json)
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

node: $(NPM_STAMP)

## Debian's Chromium for the status page's browser test (Playwright drives it; its own browser download
## is not used). Installed only when missing; CI runs as root on a fresh Debian machine.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

browser: $(CHROMIUM)

## The deployment checks' own venv: checkov pins an old `packaging` that the test tools cannot share.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

$(INFRA_STAMP): requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	printf '*\n' > $(INFRA_VENV)/.gitignore
	$(INFRA_VENV)/bin/pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/pip install --quiet -r requirements-infra.txt
	touch $@

## Deployment: scan infra/ with checkov (offline; no failed check, no unparsed file, every skip explained),
## then the structural tests of the Bicep against the app's settings.
infra-check: $(INFRA_STAMP) $(STAMP)
	$(INFRA_VENV)/bin/python tests/infra/checkov_gate.py
	$(BIN)/python -m pytest -q tests/infra

## Dependency audit of the pinned requirements (pip-audit): a known vulnerability fails; an advisory
## database that cannot be reached is reported as "AUDIT NOT DONE" and does not fail (docs/SECURITY.md).
audit: $(STAMP)
	$(BIN)/python -m devtools.audit

## Test workers (pytest-xdist): one more than the cores, because tests also wait (on Azurite, on the
## emulator's modelled latencies, on real-time leases); each starts its own emulator and Azurite on free
## ports.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

## Build the venv and node_modules, install Chromium, run the linters, type checks and audit, then the
## whole test suite on every core. Bytecode is written even where the shell turns it off
## (PYTHONDONTWRITEBYTECODE): every test worker imports the whole suite, and reading the cached
## bytecode instead of compiling each module again in each worker saves about a tenth of the suite's time.
test: export PYTHONDONTWRITEBYTECODE =
test: $(STAMP) $(NPM_STAMP) $(CHROMIUM) check audit infra-check
	$(BIN)/python -m pytest --ignore=tests/infra -n $(TEST_WORKERS) --dist loadgroup

## Lint and type-check.
check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The hydration job end to end on Azurite and the local Dataverse emulator (starts and stops both).
demo: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m devtools.demo

## The benchmark (BENCH_ROWS=1000000 for the big run); prints a table, writes bench/results/latest.json.
bench: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m bench

## Run the Dataverse Web API emulator in the foreground with seeded data.
emulator: $(STAMP)
	$(BIN)/python -m dataverse_emulator --port $${PORT:-8765} --contacts $${CONTACTS:-20000} --leads $${LEADS:-10000}

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
