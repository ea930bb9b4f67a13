# Two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8050
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench-load clean

run: $(STAMP)  ## Serve the dashboard on the embedded demo database (or BI_DATABASE_URL)
	$(BIN)/bi-app serve --host $(HOST) --port $(PORT)

test: $(STAMP)  ## Run the test suite (PostgreSQL tests need BI_TEST_POSTGRES_URL or a local server)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## Lint (ruff) and type-check (mypy) bi_app, data_layer and pages
	$(BIN)/ruff check bi_app data_layer pages
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; found $$($(PYTHON) --version 2>&1)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

bench-load: $(STAMP)  ## Load-rate benchmark into PostgreSQL (writes docs/BENCHMARKS.md)
	$(BIN)/python bench/load_rate.py

clean:
	rm -rf $(VENV) data .pytest_cache test-artifacts
