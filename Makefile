# Everyday commands. `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench faults install system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the daemon on its embedded default: SQLite in var/demo.db, the PBX simulator feeding it.
## Ctrl-C stops it and make exits 0. DEMO_ARGS passes options on (make demo DEMO_ARGS="--rate 10").
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/smdrd demo $(DEMO_ARGS)

## The Debian packages the tests use for real (mosquitto, promtool, chromium, systemd-analyze, postgresql and
## the rest: scripts/system-deps.sh lists them).
system-deps:
	bash scripts/system-deps.sh

## Set up and run the whole test suite, on two workers (a module's tests stay together, in order, on one).
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile

## The fault-injection suite: a real daemon through dropped links, kills, full disks, broker outages.
## SMDRD_FAULTS_SHORT=1 runs a shorter form of every scenario (what CI runs).
faults: $(STAMP) system-deps
	$(BIN)/python -m pytest -m faults tests/faults

## Static checks: ruff and mypy (strict).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Benchmarks (figures for the README): each prints a table and JSON.
bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/rating.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/mail.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) build *.egg-info var .mypy_cache .ruff_cache .pytest_cache .hypothesis
