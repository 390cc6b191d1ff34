# secure-mail-api: set-up, demo, tests. Every target creates the virtualenv first if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench policy-check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)            ## create .venv and install the project with its dev tools (OpenBao, moto)

demo: $(STAMP)               ## the main job on the embedded stack (local OpenBao + AWS emulator)
	$(BIN)/rotation dev demo

test: $(STAMP)               ## the whole suite
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)          ## skip the slow-marked tests
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check rotation infra policies tests

bench: $(STAMP)              ## rotation throughput vs. the bare call sequence and AWS's rate limits
	$(BIN)/python bench/rotation_bench.py

policy-check: $(STAMP)       ## the CrossGuard pack over the infra program, offline (no Pulumi CLI)
	$(BIN)/python -m policies.check

clean:
	rm -rf $(VENV) .pytest_cache .dev-stack
