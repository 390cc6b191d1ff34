# secure-mail-api: set-up, demo, tests. Every target creates the virtualenv first if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo dev test test-fast lint bench proof policy-check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)            ## create .venv and install the project with its dev tools (OpenBao, moto)

demo: $(STAMP)               ## the main job on the embedded stack (local OpenBao + AWS emulator)
	$(BIN)/python -m rotation.dev demo

dev: $(STAMP)                ## local mail API on loopback (dev gateway + embedded stack); Ctrl-C stops it
	env -u AWS_ENDPOINT_URL $(BIN)/python -m rotation.dev gateway

test: $(STAMP)               ## lint, then the whole suite
	$(BIN)/ruff check rotation infra policies tests bench examples
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile

test-fast: $(STAMP)          ## skip the slow-marked tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check rotation infra policies tests bench examples

bench: $(STAMP)              ## fleet figures beside their targets (bench/fleet_bench.py; sizes are flags)
	$(BIN)/python bench/fleet_bench.py $(BENCH_ARGS)

proof: $(STAMP)              ## zero-downtime proof: 60 s of traffic at 60 req/s while keys rotate and rotators die
	$(BIN)/python bench/zero_downtime.py --seconds 60 --rate 60 --kills 3

policy-check: $(STAMP)       ## the CrossGuard pack over the infra program, offline (no Pulumi CLI)
	$(BIN)/python -m policies.check --config policies/pack/config/dev.json

clean:
	rm -rf $(VENV) .pytest_cache .dev-stack
