# Everyday commands. `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench faults install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the daemon on its embedded default: SQLite in var/demo.db, the PBX simulator feeding it.
demo: $(STAMP)
	$(BIN)/smdrd demo

## Set up and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

## Static checks: ruff and mypy (strict).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Benchmarks (figures for the README).
bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) build *.egg-info var .mypy_cache .ruff_cache .pytest_cache .hypothesis
